"""The services object kept in ``application.bot_data`` and its typed getter for handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from telegram.ext import Application, CallbackContext

from bot.config import Settings
from bot.photo_store import PhotoStore
from classifier.types import Classifier
from db.youtube import YouTubeClient

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
    youtube: YouTubeClient | None = None
    """videos.list client, built on first use when YOUTUBE_API_KEY is set (tests install one on HttpMock)."""

    def youtube_client(self) -> YouTubeClient | None:
        """The YouTube metadata client, or None without YOUTUBE_API_KEY (metadata then stays unverified)."""
        if self.youtube is None and self.settings.youtube_api_key:
            self.youtube = YouTubeClient(self.settings.youtube_api_key)
        return self.youtube


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
