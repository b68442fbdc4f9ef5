"""Every text the bot sends, built by pure functions (HTML parse mode; user-supplied text is escaped)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from bot.views import EquipmentView, TutorialView
from db.repositories.catalog import youtube_search_url

PARSE_MODE = "HTML"

# Confidence phrases: thresholds on the top-1 probability of a `confident` prediction (our own wording scale).
_PHRASES: tuple[tuple[float, str], ...] = (
    (0.95, "I'm very sure"),
    (0.80, "I'm fairly sure"),
    (0.0, "I think"),
)


def confidence_phrase(confidence: float) -> str:
    """A short phrase for a probability in [0, 1]: >= 0.95 very sure, >= 0.80 fairly sure, else "I think"."""
    for floor, phrase in _PHRASES:
        if confidence >= floor:
            return phrase
    return _PHRASES[-1][1]


def percent(confidence: float) -> str:
    """``0.873`` -> ``"87%"`` (clamped to 0-100)."""
    return f"{round(max(0.0, min(1.0, confidence)) * 100)}%"


def start_text(first_name: str | None) -> str:
    """/start: what Spotter does and how photos are used, kept and deleted."""
    hello = f"Hi {escape(first_name)}! " if first_name else "Hi! "
    return (
        f"{hello}I'm <b>Spotter</b>. Send me a photo of a gym machine you don't recognise and I'll tell you "
        "what it is, what it trains, and show you beginner-friendly tutorials, mostly by women coaches.\n\n"
        "<b>Your photos</b>: I keep each photo you send, with my guess and your feedback, only to check and "
        'improve my answers (if you tap "Wrong", your photo may help train the next version of me). '
        "I never share them. Send /forget at any time to delete all your photos, guesses and corrections.\n\n"
        "Send /equipment to see what I know, /help for tips."
    )


def help_text(is_admin: bool) -> str:
    """/help: how to use the bot; admins also see their commands."""
    text = (
        "<b>How to use Spotter</b>\n"
        "• Send a photo (or an image file) of one machine, from a few steps away, in good light.\n"
        "• Several photos at once are fine: you get one answer with a line per photo.\n"
        "• Tap <b>Correct</b> or <b>Wrong</b> under my answer; if I was wrong, pick the right name.\n\n"
        "/equipment – what I can recognise\n"
        "/forget – delete your photos, guesses and corrections\n"
        "/start – about Spotter and your data"
    )
    if is_admin:
        text += (
            "\n\n<b>Admin</b>\n"
            "/addvideo &lt;equipment&gt; &lt;YouTube link&gt; – add a tutorial\n"
            "/removevideo &lt;id or link&gt; – remove a tutorial\n"
            "/videos [equipment] – list tutorials\n"
            "/stats – users, photos, corrections, agreement per equipment\n"
            "/model – the current model, its metrics and confusion matrix"
        )
    return text


@dataclass(frozen=True)
class EquipmentCount:
    """An equipment type with its number of curated tutorials, for /equipment."""

    equipment: EquipmentView
    tutorials: int


def equipment_list_text(items: Sequence[EquipmentCount]) -> str:
    """/equipment: one line per known equipment type with its tutorial count."""
    if not items:
        return "I don't know any equipment yet. Please ask the admins to load the catalog."
    lines = ["<b>Equipment I can recognise</b>"]
    for item in items:
        count = item.tutorials
        label = "no tutorials yet" if count == 0 else f"{count} tutorial{'s' if count != 1 else ''}"
        lines.append(f"• {escape(item.equipment.name)} – {label}")
    return "\n".join(lines)


def tutorial_lines(tutorials: Sequence[TutorialView], equipment_name: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` tutorial lines (title, channel, link), or a YouTube search link when there are
    none."""
    if not tutorials:
        url = youtube_search_url(equipment_name)
        return [f'No curated tutorials yet – <a href="{escape(url)}">search YouTube</a>.']
    lines = ["<b>Tutorials</b>"]
    for tutorial in tutorials[:limit]:
        lines.append(
            f'▶️ <a href="{escape(tutorial.url)}">{escape(tutorial.title)}</a> – {escape(tutorial.channel)}'
        )
    return lines


def confident_text(
    equipment: EquipmentView, confidence: float, tutorials: Sequence[TutorialView], limit: int = 3
) -> str:
    """Reply for a `confident` prediction: name, confidence phrase, description, tutorials."""
    lines = [
        f"{confidence_phrase(confidence)} this is a <b>{escape(equipment.name)}</b> ({percent(confidence)}).",
    ]
    if equipment.description:
        lines += ["", escape(equipment.description)]
    lines += ["", *tutorial_lines(tutorials, equipment.name, limit)]
    lines += ["", "Was I right?"]
    return "\n".join(lines)


def unsure_text(choices: Sequence[tuple[EquipmentView, float]]) -> str:
    """Reply for an `unsure` prediction: "Is it one of these?" with the likeliest choices listed."""
    lines = ["I'm not sure about this one. <b>Is it one of these?</b>"]
    for equipment, probability in choices:
        lines.append(f"• {escape(equipment.name)} ({percent(probability)})")
    return "\n".join(lines)


def not_equipment_text() -> str:
    """Reply for `not_equipment`: kind, with a tip for a clearer photo."""
    return (
        "I don't think this is a piece of gym equipment I know. 🤔\n"
        "Try a photo of just the machine, from a few steps away, in good light. "
        "If it <i>is</i> gym equipment, tap the button below and tell me what it is – that helps me learn."
    )


def album_line(index: int, equipment_name: str, confidence: float, decision: str) -> str:
    """One line of an album reply, e.g. ``1. Leg press (93%)``; unsure and not-equipment get their own
    words."""
    if decision == "confident":
        return f"{index}. <b>{escape(equipment_name)}</b> ({percent(confidence)})"
    if decision == "unsure":
        return f"{index}. Not sure – maybe {escape(equipment_name)} ({percent(confidence)})?"
    return f"{index}. Doesn't look like gym equipment I know."


def album_text(
    lines: Iterable[str], tutorials: Sequence[tuple[EquipmentView, TutorialView | None]], with_buttons: bool
) -> str:
    """Combined album reply: one line per photo, then per recognised equipment type its first tutorial (or a
    YouTube search link when none is curated)."""
    text = ["<b>Your photos</b>", *lines]
    if tutorials:
        text += ["", "<b>Tutorials</b>"]
        for equipment, tutorial in tutorials:
            if tutorial is None:
                url = youtube_search_url(equipment.name)
                text.append(f'▶️ {escape(equipment.name)}: <a href="{escape(url)}">search YouTube</a>')
            else:
                text.append(
                    f"▶️ {escape(equipment.name)}: "
                    f'<a href="{escape(tutorial.url)}">{escape(tutorial.title)}</a>'
                    f" – {escape(tutorial.channel)}"
                )
    if with_buttons:
        text += ["", "Tap a photo number's ✅ or ❌ to tell me if I was right."]
    return "\n".join(text)


PICKER_PREFIX = "Which one is it"


def picker_prompt(photo_index: int | None = None) -> str:
    """Prompt of an equipment picker sent as its own message (album photos); starts with PICKER_PREFIX."""
    which = f" for photo {photo_index}" if photo_index is not None else ""
    return f"{PICKER_PREFIX}{which}? Pick the right name:"


def thanks_confirm_text() -> str:
    """Appended after the user confirmed a prediction."""
    return "✅ Thanks for confirming!"


def thanks_correction_text(chosen_name: str | None) -> str:
    """Appended after the user picked a label (None: "something else / not gym equipment")."""
    if chosen_name is None:
        return "🙏 Thanks! Noted as something else / not gym equipment. Your photo helps me learn."
    return f"🙏 Thanks! Noted as <b>{escape(chosen_name)}</b>. Your photo helps me learn."


STALE_BUTTON = "Sorry, this button is no longer valid."
NOT_YOUR_PREDICTION = "Only the person who sent this photo can give feedback on it."
ALREADY_ANSWERED = "Thanks, I already have your answer for this photo."
NOT_ALLOWED = "Sorry, only Spotter's admins can use this command."
UNKNOWN_COMMAND = "I don't know that command. Send /help to see what I can do."

FORGET_CONFIRM = (
    "This deletes <b>all</b> your photos, my guesses on them and your corrections. It cannot be undone. "
    "Are you sure?"
)
FORGET_CANCELLED = "OK, nothing was deleted."
FORGET_NOTHING_LEFT = "Nothing of yours is stored (any more), so there was nothing to delete."


def forget_done_text(photos: int, predictions: int, corrections: int) -> str:
    """After /forget: what was deleted."""
    return (
        f"Done. I deleted {photos} photo{'s' if photos != 1 else ''}, {predictions} "
        f"guess{'es' if predictions != 1 else ''} and "
        f"{corrections} correction{'s' if corrections != 1 else ''}."
    )


PLEASE_SEND_PHOTO = {
    "sticker": "Cute sticker! 😄 But I can only recognise gym equipment in photos. Please send a photo.",
    "animation": "I can't look at GIFs or animations, sorry. Please send a still photo of the machine.",
    "video": "I can't watch videos yet. Please send a photo of the machine instead.",
    "voice": "I can't listen to voice messages. Please send a photo of the machine.",
    "document": "That file isn't an image I can look at. Please send a photo (JPEG, PNG, WEBP…).",
    "other": "Please send a photo of a gym machine and I'll tell you what it is.",
}
UNREADABLE_IMAGE = (
    "I couldn't read that image (the format may not be supported, e.g. some HEIC photos). "
    "Please send it as a normal photo, not as a file."
)
TOO_BIG = (
    "That file is too big for me (Telegram lets bots download at most 20 MB). Please send a smaller photo."
)
DOWNLOAD_FAILED = "I couldn't download your photo from Telegram just now. Please try sending it again."
SOMETHING_WRONG = (
    "Sorry, something went wrong on my side. Please try again in a moment; the admins have been told."
)
CLASSIFIER_UNAVAILABLE = "Sorry, my recognition model isn't available right now. Please try again later."


def admin_error_notice(summary: str, suppressed: int) -> str:
    """The rate-limited notice admins get when a handler fails (``summary`` is escaped here)."""
    more = f"\n({suppressed} more errors since the last notice)" if suppressed else ""
    return f"⚠️ Spotter error: <code>{escape(summary[:500])}</code>{more}\nSee the log for the traceback."


FORGET_NOT_YOURS = "Only the person who asked to be forgotten can press this button."


ADDVIDEO_USAGE = (
    "Usage: /addvideo &lt;equipment&gt; &lt;YouTube link&gt;\n"
    "Example: /addvideo leg_press https://youtu.be/dQw4w9WgXcQ\n"
    "Equipment can be its slug, name or an alias (see /equipment)."
)
REMOVEVIDEO_USAGE = "Usage: /removevideo &lt;tutorial id or YouTube link&gt; (ids are shown by /videos)"


def rate_text(rate: float | None) -> str:
    """Agreement rate as a percentage, or an en dash when nobody gave feedback."""
    return "–" if rate is None else percent(rate)


@dataclass(frozen=True)
class StatsLine:
    """One equipment row of /stats: name, photos predicted as it, confirmed, corrected, agreement rate."""

    name: str
    predictions: int
    confirmed: int
    corrected: int
    agreement_rate: float | None


@dataclass(frozen=True)
class StatsSummary:
    """Totals of /stats (see db.repositories.Stats); ``serving`` is the version the bot is running."""

    users: int
    photos: int
    confirmed: int
    corrections: int
    pending: int
    agreement_rate: float | None
    champion: str | None
    serving: str
    tutorials: int
    lines: Sequence[StatsLine]


def stats_text(stats: StatsSummary) -> str:
    """/stats: totals, then per equipment: photos, ✅ confirmed, ❌ corrected and agreement rate."""
    head = [
        "<b>Spotter statistics</b>",
        f"Users: {stats.users}",
        f"Photos: {stats.photos}",
        f"Feedback: {stats.confirmed} confirmed, {stats.corrections} corrections "
        f"({stats.pending} pending review)",
        f"Agreement rate: {rate_text(stats.agreement_rate)}",
        f"Tutorials: {stats.tutorials}",
        f"Model: serving {escape(stats.serving or 'none')}, "
        f"champion in DB {escape(stats.champion or 'none')}",
    ]
    rows = [
        f"• {escape(line.name)}: {line.predictions} photos, ✅ {line.confirmed} ❌ {line.corrected}, "
        f"agreement {rate_text(line.agreement_rate)}"
        for line in stats.lines
        if line.predictions or line.confirmed or line.corrected
    ]
    if not rows:
        rows = ["No photos yet."]
    return "\n".join([*head, "", "<b>Per equipment</b>", *rows])


@dataclass(frozen=True)
class VideoLine:
    """One tutorial of /videos."""

    id: int
    equipment: str
    title: str
    channel: str
    url: str
    status: str
    women_led: bool


def videos_text(videos: Sequence[VideoLine], equipment: str | None) -> str:
    """/videos [equipment]: one line per tutorial with its id (for /removevideo), status and link."""
    scope = f" for {escape(equipment)}" if equipment else ""
    if not videos:
        return f"No tutorials{scope} yet. Add one with /addvideo."
    lines = [f"<b>Tutorials{scope}</b> ({len(videos)})"]
    current = None
    for video in videos:
        if video.equipment != current and not equipment:
            current = video.equipment
            lines.append(f"\n<b>{escape(current)}</b>")
        flags = "" if video.status == "available" else f" [{escape(video.status)}]"
        women = "" if video.women_led else " (not women-led)"
        lines.append(
            f'#{video.id} <a href="{escape(video.url)}">{escape(video.title)}</a> – '
            f"{escape(video.channel)}{flags}{women}"
        )
    return "\n".join(lines)


def model_caption(version: str, metrics: dict[str, object], serving: str) -> str:
    """/model: the champion version and its headline metrics (top-level numbers of metrics.json)."""
    lines = [f"<b>Champion model {escape(version)}</b> (serving {escape(serving or 'none')})"]
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        shown = percent(value) if 0.0 <= value <= 1.0 and isinstance(value, float) else str(value)
        lines.append(f"{escape(key)}: {shown}")
        if len(lines) > 12:
            break
    return "\n".join(lines)


MAX_MESSAGE_CHARS = 4096
"""Bot API limit on a message's text length (sendMessage docs: 1-4096 characters after entity parsing)."""


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split ``text`` on line boundaries into chunks of at most ``limit`` characters (a longer single line
    is cut). Lines are never split inside, so HTML tags opened on a line stay balanced."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class AddVideoResult:
    """What /addvideo did: outcome added | duplicate | unavailable, the stored tutorial when added, and a
    one-line note (verified with YouTube, or why not)."""

    outcome: Literal["added", "duplicate", "unavailable"]
    tutorial: TutorialView | None
    note: str


def addvideo_result_text(result: AddVideoResult, equipment_name: str) -> str:
    """The admin's answer to /addvideo."""
    if result.outcome == "duplicate":
        return f"Not added: {escape(result.note)}."
    if result.outcome == "unavailable" or result.tutorial is None:
        return f"Not added: the video is {escape(result.note)}."
    tutorial = result.tutorial
    return (
        f"Added #{tutorial.id} for <b>{escape(equipment_name)}</b>: "
        f'<a href="{escape(tutorial.url)}">{escape(tutorial.title)}</a> – {escape(tutorial.channel)}\n'
        f"({escape(result.note)})"
    )
