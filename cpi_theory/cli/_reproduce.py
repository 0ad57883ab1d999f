"""``cpi-theory reproduce``: regenerate the figures F1-F7 (shipped in the package) and write ``INDEX.md``."""

import sys


def _run(args) -> int:
    from ..figures._reproduce import reproduce

    entries = reproduce(
        args.outdir,
        quick=args.quick,
        only=args.only,
        experiments_dir=args.experiments_dir,
        progress=not args.no_progress,
    )
    print(
        f"wrote {len(entries)} figure(s) and {args.outdir.rstrip('/')}/INDEX.md: "
        + ", ".join(e["figure"] for e in entries),
        file=sys.stderr,
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="regenerate every figure (F1-F7) and figures/INDEX.md",
        description="Run the figure definitions shipped in the package (cpi_theory/figures/, from any "
        "directory) with a progress bar, and write INDEX.md with each figure's command and key numbers.",
    )
    parser.add_argument("--quick", action="store_true", help="small configurations (minutes, for CI)")
    parser.add_argument("--only", metavar="F1,F3", help="comma-separated figure ids to run (default: all)")
    parser.add_argument("--outdir", default="figures", help="output directory (default: figures)")
    parser.add_argument(
        "--experiments-dir",
        metavar="DIR",
        help="run the fN_*.py files of DIR instead of the package's figures (e.g. experiments/)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
