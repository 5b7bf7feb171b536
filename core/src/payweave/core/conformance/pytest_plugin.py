"""pytest plugin (entry point ``pytest11``) that provides the payweave conformance suite.

It is inert unless a test session asks for it (``--payweave-plugin`` or the conformance
runner), so installing payweave never changes other projects' test runs.
"""
