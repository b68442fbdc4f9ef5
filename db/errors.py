"""Errors raised by db/. Each message is safe to show an admin and names what to do."""

from __future__ import annotations


class SpotterDatabaseError(Exception):
    """Base class for db/ errors meant to be reported to a user or admin (not bugs)."""


class DatabaseBehindError(SpotterDatabaseError):
    """The database schema is not at the migrations' head (or is empty / ahead / unknown)."""


class NotFoundError(SpotterDatabaseError):
    """A row the caller named (prediction, correction, tutorial, equipment) does not exist."""


class UnknownLabelError(SpotterDatabaseError):
    """A label is neither a known equipment slug nor ``not_equipment``."""


class NotYourPredictionError(SpotterDatabaseError):
    """A user tried to give feedback on someone else's prediction (tampered callback data)."""


class DuplicateVideoError(SpotterDatabaseError):
    """The video is already in the catalog."""


class CorrectionLockedError(SpotterDatabaseError):
    """The correction was already used to train a model version, so it can no longer change."""


class DatabaseUnavailableError(SpotterDatabaseError):
    """The database cannot be opened: malformed DATABASE_URL, missing driver, a file that is not a database or
    cannot be created, a server that refuses the connection. The message names the URL without password."""
