"""Errors of the Anna store; every one is an :class:`essa.errors.StoreError` with a one-line message."""

from __future__ import annotations

from essa.plugin import StoreError


class AnnaError(StoreError):
    """The Anna store failed an operation."""


class AnnaUnavailable(AnnaError):
    """No routing node, or no KVS node, can be reached."""


class AnnaTimeout(AnnaError):
    """A request was not answered in time."""


class Malformed(ValueError):
    """A message or liveliness token from a peer does not have the shape the protocol defines.

    Never shown to users as an error of theirs: the receiver drops what it
    cannot use with one rate-limited warning line naming the problem.
    """

    #: The request id of a malformed operation, when it could be read (so it can be answered).
    rid = None
