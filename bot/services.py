"""The services object kept in ``application.bot_data`` and its typed getter for handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from telegram.ext import Application, CallbackContext

from bot.config import Settings
from bot.photo_store import PhotoStore
from classifier.types import Classifier

SERVICES_KEY = "spotter.services"


@dataclass
class Services:
    """Everything handlers need: the classifier service, the DB session factory, the settings, the photo
    store, and per-process state (album collector, error-notice limiter) that must not live in handlers."""

    classifier: Classifier
    session_factory: sessionmaker[Session]
    settings: Settings
    photo_store: PhotoStore
    state: dict[str, Any] = field(default_factory=dict)


def install_services(application: Application[Any, Any, Any, Any, Any, Any], services: Services) -> None:
    """Put ``services`` into ``application.bot_data``."""
    application.bot_data[SERVICES_KEY] = services


def get_services(
    context: CallbackContext[Any, Any, Any, Any] | Application[Any, Any, Any, Any, Any, Any],
) -> Services:
    """The Services of this application. Raises RuntimeError when `install_services` was not called."""
    services = context.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("Spotter services are not installed in bot_data (use bot.app.build_application)")
    return services
