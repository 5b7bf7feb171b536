"""The plugin conformance suite (see docs/conformance.md)."""
