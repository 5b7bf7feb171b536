"""Test helpers shipped with the core (used by our suite, the demo and plugin authors)."""
