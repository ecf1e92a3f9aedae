"""Testing aids for essa and its plugins.

:mod:`essa.testing.conformance` is the engine conformance suite: a pytest
plugin plus tests that every engine plugin must pass unchanged.
"""
