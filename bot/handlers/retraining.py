"""Admin commands for learning from corrections (issue 6): /retrain, /review, /rollback, /versions.

- /retrain runs the pipeline now (`bot.jobs.retrain_and_swap`: subprocess, one at a time, timeout), editing
  one progress message as stages finish, then reports the before/after figures (other admins are told too).
- /review shows pending corrections one at a time: the stored photo, the predicted and the proposed label,
  how many users agree, and buttons Approve / Reject / Relabel / Skip. Callback data is compact and
  validated (``rv:<verb>:<correction id>[:<label>]``, at most 64 bytes); a non-admin's press or stale data
  changes nothing and gets a polite answer.
- /rollback [version] promotes the previous champion (or the named version) again and hot-swaps it in the
  same way as a promotion (worker-thread load, warm-up, swap); refused while a retrain is running.
- /versions lists the registry's versions with their accuracy, the champion marked.

Blocking work (database, files, registry) runs in threads via ``asyncio.to_thread``; no TensorFlow here.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from bot import jobs, texts
from bot.services import Services, get_services
from classifier.registry import Registry, RegistryError
from classifier.retrain import RetrainBusyError, retrain_lock
from db import review
from db.errors import SpotterDatabaseError
from db.models import NOT_EQUIPMENT, REVIEW_PENDING
from db.repositories import corrections as corrections_repo
from db.repositories.catalog import list_equipment
from db.repositories.model_versions import record_promotion
from db.session import session_scope

log = logging.getLogger(__name__)

ADMIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("retrain", "Retrain now from approved corrections"),
    ("review", "Review pending corrections one by one"),
    ("rollback", "Serve the previous model version again"),
    ("versions", "Model versions and their accuracy"),
)

REVIEW_PATTERN = r"^rv:"
"""Regex for `CallbackQueryHandler(pattern=...)` selecting review buttons (feedback uses other prefixes)."""
_REVIEW_RE = re.compile(
    r"^rv:(a|r|l|s|b):([1-9][0-9]{0,17})$|^rv:p:([1-9][0-9]{0,17}):([a-z0-9][a-z0-9_]{0,39}|-)$"
)
ReviewVerb = Literal["a", "r", "l", "s", "b", "p"]
MAX_CALLBACK_BYTES = 64
VERSIONS_SHOWN = 10


# --------------------------------------------------------------------------------------------------------
# Callback data (pure)


class ReviewDataError(ValueError):
    """Malformed, oversized or tampered review callback data."""


@dataclass(frozen=True)
class ReviewData:
    """A review button: verb a(pprove) r(eject) l(relabel: open picker) s(kip) b(ack from picker) p(ick a
    label, ``label`` a slug or ``-`` for not equipment) and the correction's database id."""

    verb: ReviewVerb
    correction_id: int
    label: str | None = None

    def encode(self) -> str:
        """``rv:<verb>:<id>[:<label>]``; ReviewDataError if it does not parse back or exceeds 64 bytes."""
        text = f"rv:{self.verb}:{self.correction_id}" + (f":{self.label}" if self.verb == "p" else "")
        if len(text.encode()) > MAX_CALLBACK_BYTES or parse_review_data(text) != self:
            raise ReviewDataError(f"cannot encode {self!r}")
        return text


def parse_review_data(data: object) -> ReviewData:
    """Parse review callback data; raises ReviewDataError for anything but exactly our format."""
    if not isinstance(data, str) or len(data.encode()) > MAX_CALLBACK_BYTES:
        raise ReviewDataError("not review callback data")
    match = _REVIEW_RE.fullmatch(data)
    if match is None:
        raise ReviewDataError("not review callback data")
    if match.group(1):
        return ReviewData(match.group(1), int(match.group(2)))  # type: ignore[arg-type]
    return ReviewData("p", int(match.group(3)), match.group(4))


def review_keyboard(correction_id: int) -> InlineKeyboardMarkup:
    """Approve / Reject / Relabel / Skip for one correction."""
    verbs: tuple[ReviewVerb, ...] = ("a", "r", "l", "s")
    b = [ReviewData(v, correction_id).encode() for v in verbs]
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("✅ Approve", callback_data=b[0]),
                InlineKeyboardButton("🚫 Reject", callback_data=b[1]),
            ],
            [
                InlineKeyboardButton("🏷 Relabel", callback_data=b[2]),
                InlineKeyboardButton("⏭ Skip", callback_data=b[3]),
            ],
        ]
    )


def relabel_keyboard(correction_id: int, labels: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    """One button per (slug, display name), two per row, then "not gym equipment" and Back."""
    buttons = [
        InlineKeyboardButton(name, callback_data=ReviewData("p", correction_id, slug).encode())
        for slug, name in labels
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append(
        [
            InlineKeyboardButton(
                "Not gym equipment", callback_data=ReviewData("p", correction_id, "-").encode()
            )
        ]
    )
    rows.append([InlineKeyboardButton("↩️ Back", callback_data=ReviewData("b", correction_id).encode())])
    return InlineKeyboardMarkup(rows)


# --------------------------------------------------------------------------------------------------------
# Blocking helpers (run in threads)


@dataclass(frozen=True)
class ReviewItem:
    """A pending correction as shown in /review (plain values, no ORM objects)."""

    correction_id: int
    predicted: str
    confidence: float
    proposed: str
    image_path: str
    agreeing_users: int
    pending_total: int
    model_version: str


def _name(slug: str, names: dict[str, str]) -> str:
    if slug == NOT_EQUIPMENT:
        return "not gym equipment"
    return names.get(slug) or slug.replace("_", " ")


def load_next_review(services: Services, after_id: int) -> ReviewItem | None:
    """The next pending correction after ``after_id`` (wrapping to the oldest), or None when none is left."""
    with session_scope(services.session_factory) as session:
        rows = corrections_repo.pending_corrections(session, limit=1, after_id=after_id)
        if not rows and after_id:
            rows = corrections_repo.pending_corrections(session, limit=1, after_id=0)
        if not rows:
            return None
        c = rows[0]
        return ReviewItem(
            c.id,
            c.prediction.label,
            c.prediction.confidence,
            c.label,
            c.prediction.image_path,
            review.agreeing_users(session, c),
            corrections_repo.count_pending(session),
            c.prediction.model_version,
        )


def equipment_names(services: Services) -> dict[str, str]:
    """{slug: display name} from the catalog, in menu order."""
    with session_scope(services.session_factory) as session:
        return {e.slug: e.display_name for e in list_equipment(session)}


def apply_review(
    services: Services, correction_id: int, admin_id: int, verb: ReviewVerb, label: str | None
) -> str:
    """Apply an admin's decision to a pending correction; returns the resulting label.

    Raises SpotterDatabaseError (unknown correction or label) or ValueError when it is no longer pending.
    """
    with session_scope(services.session_factory) as session:
        c = corrections_repo.get_correction(session, correction_id)
        if c is None:
            raise ValueError("this correction no longer exists (its user may have deleted her data)")
        if c.review_state != REVIEW_PENDING:
            raise ValueError(f"this correction was already {c.review_state}")
        if verb == "a":
            corrections_repo.review_correction(
                session, correction_id, reviewer_telegram_id=admin_id, action="approve"
            )
        elif verb == "r":
            corrections_repo.review_correction(
                session, correction_id, reviewer_telegram_id=admin_id, action="reject"
            )
        else:
            chosen = NOT_EQUIPMENT if label == "-" else str(label)
            corrections_repo.review_correction(
                session, correction_id, reviewer_telegram_id=admin_id, action="relabel", label=chosen
            )
        return c.label


def read_photo(path: str, photos_dir: Path) -> bytes | None:
    """The stored photo's bytes if it lies under DATA_DIR/photos and is readable, else None."""
    p = Path(path)
    try:
        if not p.resolve().is_relative_to(photos_dir.resolve()):
            log.warning("refusing to send %s: outside %s", p, photos_dir)
            return None
        return p.read_bytes()
    except OSError:
        return None


@dataclass(frozen=True)
class VersionLine:
    """One registry version for /versions."""

    version: str
    champion: bool
    accuracy: float | None
    created: str
    note: str


def _accuracy(metrics: dict[str, Any]) -> float | None:
    for path in (("retrain", "challenger_accuracy"), ("val", "top1"), ("metrics", "top1"), ("top1",)):
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def list_versions(models_dir: Path) -> list[VersionLine]:
    """Newest first: version, champion flag, accuracy on its evaluation set, creation date, retrain note."""
    registry = Registry(models_dir)
    champion = registry.champion()
    lines: list[VersionLine] = []
    for version in reversed(registry.versions()):
        try:
            metrics = registry.read_json(version, "metrics.json")
        except (RegistryError, OSError, json.JSONDecodeError):
            metrics = {}
        metrics = metrics if isinstance(metrics, dict) else {}
        raw_info = metrics.get("retrain")
        info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
        note = ""
        if info:
            verdict = "promoted" if info.get("promoted") else "not promoted"
            note = f"retrain, {info.get('corrections_used', 0)} corrections, {verdict}"
        created = str(metrics.get("created") or metrics.get("created_at") or "")[:16].replace("T", " ")
        lines.append(VersionLine(version, version == champion, _accuracy(metrics), created, note))
    return lines


def rollback_registry(models_dir: Path, target: str | None) -> tuple[str | None, str]:
    """Promote ``target`` (or the previous champion) with reason "rollback". Returns (old champion, new one).

    Raises RegistryError when there is nothing to roll back to, the version does not exist, or a retraining
    run holds the MODELS_DIR lock.
    """
    registry = Registry(models_dir)
    try:
        with retrain_lock(models_dir):  # a retrain run (bot job or a maintainer's) must not race the pointer
            current = registry.champion()
            version = target or registry.previous_champion()
            if version is None:
                raise RegistryError("there is no previous champion to roll back to")
            registry.version_dir(version)
            if version == current:
                raise RegistryError(f"{version} is already the champion")
            registry.promote(version, reason="rollback")
            return current, version
    except RetrainBusyError:
        raise RegistryError("a retraining run is in progress; try again when it has finished") from None


def record_rollback(services: Services, version: str, admin_id: int) -> None:
    """Record the rollback in the database's promotion history."""
    with session_scope(services.session_factory) as session:
        record_promotion(session, version, reason="rollback", promoted_by_telegram_id=admin_id)


# --------------------------------------------------------------------------------------------------------
# Handlers


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add /retrain (non-blocking), /review, /rollback, /versions and the review buttons (group 0)."""
    application.add_handler(CommandHandler("retrain", on_retrain, block=False))
    application.add_handler(CommandHandler("review", on_review))
    application.add_handler(CommandHandler("rollback", on_rollback))
    application.add_handler(CommandHandler("versions", on_versions))
    application.add_handler(CallbackQueryHandler(on_review_button, pattern=REVIEW_PATTERN))


async def _admin_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> tuple[Message, int] | None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return None
    if not get_services(context).settings.is_admin(user.id):
        await message.reply_text(texts.NOT_ALLOWED)
        return None
    return message, user.id


async def _idle_admin_message(
    update: Update, context: ContextTypes.DEFAULT_TYPE, busy_text: str
) -> tuple[Message, int] | None:
    """Like `_admin_message`, but also answers ``busy_text`` (and returns None) while a retrain runs."""
    checked = await _admin_message(update, context)
    if checked is not None and jobs.get_runner(get_services(context)).busy:
        await checked[0].reply_text(busy_text)
        return None
    return checked


async def on_retrain(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/retrain: run the pipeline now with progress messages, then report (admins only)."""
    checked = await _idle_admin_message(
        update, context, "Retraining is already running; I will report when it has finished."
    )
    if checked is None:
        return
    message, admin_id = checked
    services = get_services(context)
    status = await message.reply_text("Retraining started: collecting approved corrections…")
    seen: list[str] = []

    async def on_progress(line: str) -> None:
        seen.append(line)
        body = "\n".join(f"• {html.escape(x)}" for x in seen[-8:])
        try:
            await status.edit_text(f"Retraining…\n{body}")
        except BadRequest as exc:  # e.g. "message is not modified"
            log.debug("progress edit skipped: %s", exc)

    outcome = await jobs.retrain_and_swap(services, on_progress)
    report = html.escape(jobs.format_outcome(outcome))
    try:
        await status.edit_text(report)
    except TelegramError:
        await message.reply_text(report)
    if outcome.status not in ("busy",):
        await jobs.notify_admins(context.bot, services, jobs.format_outcome(outcome), skip=admin_id)


async def _send_review_item(message: Message, services: Services, item: ReviewItem | None) -> None:
    if item is None:
        await message.reply_text("No corrections are waiting for review. 🎉")
        return
    names = await asyncio.to_thread(equipment_names, services)
    caption = (
        f"Correction #{item.correction_id} ({item.pending_total} pending)\n"
        f"Model {html.escape(item.model_version)} said: <b>{html.escape(_name(item.predicted, names))}</b> "
        f"({item.confidence:.0%})\n"
        f"User says: <b>{html.escape(_name(item.proposed, names))}</b>\n"
        f"Users agreeing on this photo: {item.agreeing_users}"
    )
    photo = await asyncio.to_thread(read_photo, item.image_path, services.settings.photos_dir)
    keyboard = review_keyboard(item.correction_id)
    if photo is None:
        await message.reply_text(caption + "\n(the stored photo is missing)", reply_markup=keyboard)
        return
    try:
        await message.reply_photo(photo, caption=caption, reply_markup=keyboard)
        return
    except BadRequest as exc:  # sendPhoto limits: 10 MB, width + height <= 10000, aspect ratio <= 20
        log.info(
            "review: correction %s photo refused by sendPhoto (%s); sending it as a file",
            item.correction_id,
            exc,
        )
    try:
        await message.reply_document(
            photo, filename=Path(item.image_path).name, caption=caption, reply_markup=keyboard
        )
    except BadRequest as exc:
        await message.reply_text(
            caption + f"\n(the stored photo could not be sent: {html.escape(exc.message)})",
            reply_markup=keyboard,
        )


async def on_review(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/review: show the oldest pending correction (admins only)."""
    checked = await _admin_message(update, context)
    if checked is None:
        return
    message, _ = checked
    services = get_services(context)
    item = await asyncio.to_thread(load_next_review, services, 0)
    await _send_review_item(message, services, item)


async def _edit(message: Message, text: str, markup: InlineKeyboardMarkup | None) -> None:
    try:
        if message.photo or message.document:
            await message.edit_caption(text, reply_markup=markup)
        else:
            await message.edit_text(text, reply_markup=markup)
    except BadRequest as exc:
        log.debug("review edit skipped: %s", exc)


async def on_review_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Approve / Reject / Relabel / Skip / pick a label; then show the next pending correction."""
    query = update.callback_query
    if query is None:
        return
    services = get_services(context)
    if not services.settings.is_admin(query.from_user.id):
        await query.answer("Only admins can review corrections.", show_alert=True)
        return
    try:
        data = parse_review_data(query.data)
    except ReviewDataError:
        log.warning("tampered review callback data %r from %s", query.data, query.from_user.id)
        await query.answer("This button is not valid any more.")
        return
    message = query.message if isinstance(query.message, Message) else None
    if message is None:
        await query.answer("This message is too old; send /review again.")
        return
    base = html.escape(message.caption or message.text or "")
    if data.verb == "l":
        names = await asyncio.to_thread(equipment_names, services)
        await query.answer()
        await _edit(message, base, relabel_keyboard(data.correction_id, list(names.items())))
        return
    if data.verb == "b":
        await query.answer()
        await _edit(message, base, review_keyboard(data.correction_id))
        return
    if data.verb == "s":
        await query.answer("Skipped")
        await _edit(message, f"{base}\n⏭ Skipped", None)
    else:
        try:
            await asyncio.to_thread(
                apply_review, services, data.correction_id, query.from_user.id, data.verb, data.label
            )
        except (ValueError, SpotterDatabaseError) as exc:
            await query.answer(str(exc)[:190], show_alert=True)
            await _edit(message, f"{base}\n{html.escape(str(exc))}", None)
            return
        names = await asyncio.to_thread(equipment_names, services)
        if data.verb == "a":
            verdict = "✅ Approved"
        elif data.verb == "r":
            verdict = "🚫 Rejected"
        else:
            chosen = NOT_EQUIPMENT if data.label == "-" else str(data.label)
            verdict = f"🏷 Relabelled as {html.escape(_name(chosen, names))} and approved"
        await query.answer(verdict.split(" ", 1)[1])
        await _edit(message, f"{base}\n{verdict}", None)
    item = await asyncio.to_thread(load_next_review, services, data.correction_id)
    if item is not None and item.correction_id == data.correction_id:
        item = None  # only the skipped one is left
    await _send_review_item(message, services, item)


async def on_rollback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/rollback [version]: serve the previous champion (or the named version) again (admins only)."""
    checked = await _idle_admin_message(
        update, context, "A retraining run is in progress; roll back when it has finished."
    )
    if checked is None:
        return
    message, admin_id = checked
    services = get_services(context)
    args = context.args or []
    target = args[0].strip() if args else None
    try:
        old, new = await asyncio.to_thread(rollback_registry, services.settings.models_dir, target)
    except RegistryError as exc:
        await message.reply_text(f"Cannot roll back: {html.escape(str(exc))}.")
        return
    await asyncio.to_thread(record_rollback, services, new, admin_id)
    try:
        swapped = await jobs.swap_in_champion(services)
    except Exception as exc:
        log.exception("rollback: loading %s failed", new)
        await message.reply_text(
            f"The champion pointer now names {new}, but loading it failed ({html.escape(str(exc))}); "
            f"{html.escape(old or 'the old model')} keeps serving until a restart."
        )
        return
    serving = getattr(services.classifier, "model_version", "")
    text = f"Rolled back: {old or 'none'} → {new}. " + (
        f"Now serving {serving}." if swapped else "The bot will load it on restart."
    )
    await message.reply_text(html.escape(text))
    await jobs.notify_admins(context.bot, services, text, skip=admin_id)


async def on_versions(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/versions: the newest model versions with accuracy, champion marked (admins only)."""
    checked = await _admin_message(update, context)
    if checked is None:
        return
    message, _ = checked
    services = get_services(context)
    lines = await asyncio.to_thread(list_versions, services.settings.models_dir)
    if not lines:
        await message.reply_text("No model versions yet.")
        return
    out = ["Model versions (newest first; ★ = champion):"]
    for v in lines[:VERSIONS_SHOWN]:
        acc = f"{v.accuracy:.1%}" if v.accuracy is not None else "n/a"
        star = "★ " if v.champion else ""
        extra = f" — {html.escape(v.note)}" if v.note else ""
        created = f" ({html.escape(v.created)})" if v.created else ""
        out.append(f"{star}<b>{html.escape(v.version)}</b>: {acc}{created}{extra}")
    serving = getattr(services.classifier, "model_version", "")
    if serving:
        out.append(f"Serving now: {html.escape(serving)}")
    await message.reply_text("\n".join(out))
