"""PLACEHOLDER created by the bot helper (issue 4) so that bot.app imports; the retraining helper (issue 6)
owns this file and replaces it with /retrain, /review, /rollback and /versions.

Contract used by bot.app: `register(application)` adds the handlers (group 0), and the optional
`ADMIN_COMMANDS` tuple of (command, description) pairs is appended to the admins' command menu.
"""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

ADMIN_COMMANDS: tuple[tuple[str, str], ...] = ()


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Register the retraining admin handlers (none in this placeholder)."""
