"""Errors of the Anna store; every one is an :class:`essa.errors.StoreError` with a one-line message."""

from __future__ import annotations

from essa.errors import StoreError


class AnnaError(StoreError):
    """The Anna store failed an operation."""


class AnnaUnavailable(AnnaError):
    """No routing node, or no KVS node, can be reached."""


class AnnaTimeout(AnnaError):
    """A request was not answered in time."""
