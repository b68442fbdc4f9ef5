"""python -m synth {generate,preview}: make synthetic training photos from product shots (see README)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from synth.generate import MIN_FOREGROUNDS, ClassReport, generate
from synth.preview import default_shared_data, preview_from_inputs, preview_from_output


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the synth CLI."""
    parser = argparse.ArgumentParser(prog="python -m synth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate", help="composite product shots onto gym interiors (JPEGs + manifest.jsonl)"
    )
    gen.add_argument(
        "--foregrounds", type=Path, required=True, help="folder-per-class product shots on white"
    )
    gen.add_argument("--backgrounds", type=Path, required=True, help="folder of gym interiors")
    count = gen.add_mutually_exclusive_group(required=True)
    count.add_argument("--per-foreground", type=int, help="images made from each product shot")
    count.add_argument("--per-class", type=int, help="images per class, spread evenly over its foregrounds")
    gen.add_argument("--out", type=Path, required=True, help="output folder (folder-per-class JPEGs)")
    gen.add_argument("--seed", type=int, required=True, help="same seed and inputs -> same bytes")
    gen.add_argument("--size", type=int, default=512, help="side of the square output images in px (512)")
    gen.add_argument("--classes", nargs="+", help="only these class folders (default: all)")
    gen.add_argument(
        "--real",
        type=Path,
        help="folder-per-class real photos: for classes with fewer than --min-foregrounds product shots, "
        "cut objects from real photos whose mask is reliable (border mostly white)",
    )
    gen.add_argument("--min-foregrounds", type=int, default=MIN_FOREGROUNDS, help="thin-class threshold (5)")
    gen.add_argument("--no-jitter", action="store_true", help="no brightness/contrast/saturation jitter")
    gen.add_argument("--no-shadow", action="store_true", help="no contact shadow")
    gen.add_argument(
        "--see-through",
        action="store_true",
        help="also make enclosed studio-white areas transparent (backdrop between bars; "
        "may punch pure-white parts)",
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    shared = default_shared_data()
    pre = sub.add_parser("preview", help="contact sheet of synthetic samples (PNG)")
    pre.add_argument("--out", type=Path, required=True, help="PNG file to write")
    pre.add_argument(
        "--from", dest="from_dir", type=Path, help="sample an existing `generate` output instead"
    )
    pre.add_argument(
        "--foregrounds", type=Path, default=shared / "white_bg", help="default: ../shared/data/white_bg"
    )
    pre.add_argument(
        "--backgrounds", type=Path, default=shared / "backgrounds", help="default: ../shared/data/backgrounds"
    )
    pre.add_argument("--per-class", type=int, default=5, help="composites per class (5)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--size", type=int, default=512)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            min_fg: int = args.min_foregrounds

            def show(report: ClassReport) -> None:
                print(report.summary(min_fg, args.real), flush=True)

            result = generate(
                args.foregrounds,
                args.backgrounds,
                args.out,
                seed=args.seed,
                per_foreground=args.per_foreground,
                per_class=args.per_class,
                size=args.size,
                classes=args.classes,
                real_dir=args.real,
                min_foregrounds=min_fg,
                jitter=not args.no_jitter,
                shadow=not args.no_shadow,
                see_through=args.see_through,
                progress=not args.quiet,
                on_class=show,
            )
            print(f"wrote {result.total_images} images to {result.out_dir}, manifest {result.manifest}")
        else:
            if args.from_dir is not None:
                sheet = preview_from_output(args.from_dir, args.per_class, args.seed)
            else:
                for folder in (args.foregrounds, args.backgrounds):
                    if not folder.is_dir():
                        raise FileNotFoundError(f"not a folder: {folder} (pass --foregrounds/--backgrounds)")
                sheet = preview_from_inputs(
                    args.foregrounds, args.backgrounds, args.per_class, args.seed, args.size
                )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            sheet.save(args.out)
            print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
