"""``python -m db``: database and catalog commands.

    python -m db upgrade          # alembic upgrade head (same as `alembic upgrade head`)
    python -m db check [--labels models/v0001/labels.json]
                                  # schema at head? every seed / model label has an equipment row?
    python -m db seed             # load db/catalog.toml (idempotent; keeps admins' edits)
    python -m db refresh-videos   # re-check videos with YouTube (needs YOUTUBE_API_KEY)
    python -m db videos [SLUG]    # list the catalog's tutorials
    python -m db stats            # users, photos, corrections, agreement rate per equipment

Every command except ``upgrade`` refuses to run on a database that is behind (exit status 2) and names the
command that fixes it. The database is DATABASE_URL, else sqlite:///<DATA_DIR>/spotter.sqlite3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from db import repositories as repo
from db.errors import DatabaseBehindError, DatabaseUnavailableError
from db.models import NOT_EQUIPMENT
from db.refresh import refresh_videos
from db.schema import ensure_schema_current, upgrade_to_head
from db.seed import DEFAULT_SEED_PATH, SeedError, apply_seed, load_seed
from db.session import make_engine, make_session_factory, session_scope
from db.settings import DatabaseSettings
from db.youtube import YouTubeClient

log = logging.getLogger("db")

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_BEHIND = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m db", description="Spotter database and catalog commands")
    parser.add_argument("--database-url", help="override DATABASE_URL for this command")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", help="migrate the database to the latest schema (alembic upgrade head)")
    check = sub.add_parser("check", help="check the schema is current and the catalog is complete")
    check.add_argument(
        "--labels",
        type=Path,
        action="append",
        default=[],
        help="a model version's labels.json: every label must have an equipment row (repeatable)",
    )
    seed = sub.add_parser("seed", help="load the catalog seed file (idempotent)")
    seed.add_argument("--file", type=Path, default=DEFAULT_SEED_PATH, help="seed TOML (default: %(default)s)")
    seed.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
    refresh = sub.add_parser("refresh-videos", help="re-check stored videos with YouTube's videos.list")
    refresh.add_argument(
        "--older-than-days",
        type=_days,
        default=None,
        help="only videos not checked for this many days (0-36500)",
    )
    videos = sub.add_parser("videos", help="list tutorials")
    videos.add_argument("slug", nargs="?", help="only this equipment slug")
    videos.add_argument("--removed", action="store_true", help="include videos removed by admins")
    sub.add_parser("stats", help="usage and feedback figures")
    return parser


def _days(text: str) -> float:
    """argparse type of --older-than-days: a number of days in [0, 36500] (larger ones overflow datetime)."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 <= days <= 36500:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be between 0 and 36500 days, got {text}")
    return days


def _open(url: str) -> Engine | None:
    try:
        engine = make_engine(url)
    except DatabaseUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    try:
        ensure_schema_current(engine)
    except (DatabaseBehindError, DatabaseUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        engine.dispose()
        return None
    return engine


def _read_labels(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):  # tolerate {"labels": [...]}
        data = data.get("labels")
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ValueError(f"{path} is not a JSON list of label strings")
    return list(data)


def _check(engine: Engine, label_files: Sequence[Path]) -> int:
    seed = load_seed()
    factory = make_session_factory(engine)
    status = EXIT_OK
    with session_scope(factory) as session:
        counts = {e.slug: n for e, n in repo.equipment_with_tutorial_counts(session)}
        missing = [e.slug for e in seed.equipment if e.slug not in counts]
        print(f"schema: at head; equipment types: {len(counts)}; videos shown: {sum(counts.values())}")
        if missing:
            print(f"missing equipment rows (run `python -m db seed`): {', '.join(missing)}")
            status = EXIT_PROBLEM
        for path in label_files:
            try:
                labels = _read_labels(path)
            except (OSError, ValueError) as exc:
                print(f"error: cannot read labels from {path}: {exc}", file=sys.stderr)
                status = EXIT_PROBLEM
                continue
            # NOT_EQUIPMENT and dunder classes (the classifier's "__other__") are not equipment types
            unknown = [
                label
                for label in labels
                if label not in counts and label != NOT_EQUIPMENT and not label.startswith("__")
            ]
            if unknown:
                print(f"{path}: labels with no equipment row: {', '.join(unknown)}")
                status = EXIT_PROBLEM
            else:
                print(f"{path}: all {len(labels)} labels have an equipment row")
        for slug, n in counts.items():
            if n == 0:
                print(f"  {slug}: no tutorial yet (replies offer a YouTube search link)")
    return status


def _seed(engine: Engine, path: Path, dry_run: bool) -> int:
    try:
        seed = load_seed(path)
    except SeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        report = apply_seed(session, seed)
        if dry_run:
            session.rollback()
    print(("dry run, nothing written\n" if dry_run else "") + report.summary())
    for line in report.kept_details:
        print(f"  kept: {line}")
    return EXIT_OK


def _refresh(engine: Engine, settings: DatabaseSettings, older_than_days: float | None) -> int:
    if not settings.youtube_api_key:
        print("YOUTUBE_API_KEY is not set: video metadata stays as the curators typed it (unverified).")
        return EXIT_OK
    client = YouTubeClient(settings.youtube_api_key)
    before = None
    if older_than_days is not None:
        before = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
    report = refresh_videos(make_session_factory(engine), client, checked_before=before)
    print(report.summary())
    return EXIT_PROBLEM if report.errors else EXIT_OK


def _videos(engine: Engine, slug: str | None, removed: bool) -> int:
    with session_scope(make_session_factory(engine)) as session:
        if slug is not None and repo.get_equipment(session, slug) is None:
            print(f"error: unknown equipment {slug!r}", file=sys.stderr)
            return EXIT_PROBLEM
        for t in repo.list_tutorials(session, slug, include_removed=removed):
            flags = (
                [t.status] + (["removed"] if t.removed_at else []) + (["women-led"] if t.women_led else [])
            )
            print(
                f"{t.equipment.slug:22} {t.youtube_id}  {t.display_title}  "
                f"[{t.channel or '?'}] ({', '.join(flags)})"
            )
    return EXIT_OK


def _stats(engine: Engine) -> int:
    with session_scope(make_session_factory(engine)) as session:
        stats = repo.collect_stats(session)
    rate = "n/a" if stats.agreement_rate is None else f"{stats.agreement_rate:.0%}"
    print(
        f"users {stats.users}, photos {stats.photos} ({stats.distinct_images} distinct), "
        f"corrections {stats.corrections} {stats.corrections_by_state}, agreement {rate}, "
        f"champion {stats.champion or 'none recorded'}"
    )
    for row in stats.per_equipment:
        r = "n/a" if row.agreement_rate is None else f"{row.agreement_rate:.0%}"
        print(
            f"  {row.slug:22} predicted {row.predictions:5}  confirmed {row.confirmed:4}  "
            f"corrected {row.corrected:4}  agreement {r}"
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status (0 ok, 1 problem reported, 2 database behind)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    settings = DatabaseSettings()
    url = args.database_url or settings.resolved_database_url()
    if args.command == "upgrade":
        try:
            upgrade_to_head(url)
        except DatabaseUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        except DBAPIError as exc:  # e.g. a file that is not a database, a server refusing the connection
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
            print(f"error: cannot upgrade the database: {reason}", file=sys.stderr)
            return EXIT_PROBLEM
        print("database is at the latest schema")
        return EXIT_OK
    engine = _open(url)
    if engine is None:
        return EXIT_BEHIND
    try:
        if args.command == "check":
            return _check(engine, args.labels)
        if args.command == "seed":
            return _seed(engine, args.file, args.dry_run)
        if args.command == "refresh-videos":
            return _refresh(engine, settings, args.older_than_days)
        if args.command == "videos":
            return _videos(engine, args.slug, args.removed)
        return _stats(engine)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
