"""``cpi-theory reproduce``: regenerate the figures F1-F7 (shipped in the package) and write ``INDEX.md``;
with ``--check``, compare regenerated figures with the published ones."""

import json
import pathlib
import shutil
import sys
import tempfile

from .._errors import ConfigError
from ._manual import REPRODUCE_EPILOG
from ._paths import check_input_dir, check_output_dir


def _available(args) -> list[str]:
    from ..figures._reproduce import experiment_files, find_experiments_dir, packaged_figure_ids

    if args.experiments_dir is None:
        return packaged_figure_ids()
    return list(experiment_files(find_experiments_dir(args.experiments_dir)))


def _validate(args) -> None:
    from ..figures._reproduce import select

    args.figures = select(_available(args), args.only)
    if args.check is None:
        if args.reference is not None:
            raise ConfigError("--reference", "only with --check")
        check_output_dir("--outdir", args.outdir or "figures")
        return
    reference = pathlib.Path(args.reference or "figures")
    check_input_dir("--reference", str(reference))
    if args.check:  # compare an existing folder: nothing is run
        check_input_dir("--check", args.check)
        if args.outdir is not None or args.quick:
            raise ConfigError("--check", "with a folder to compare, --outdir and --quick do not apply")
    elif args.outdir is not None:
        check_output_dir("--outdir", args.outdir)
        if pathlib.Path(args.outdir).resolve() == reference.resolve():
            raise ConfigError(
                "--outdir", "must differ from --reference with --check (it would be overwritten)"
            )
    for figure in args.figures:
        for folder, flag in (
            (reference, "--reference"),
            *([(pathlib.Path(args.check), "--check")] if args.check else []),
        ):
            entry = folder / "index" / f"{figure}.json"
            if not entry.is_file():
                raise ConfigError(
                    flag, f"{folder} has no {figure} (no {entry}); run `cpi-theory reproduce` into it"
                )
        quick = json.loads((reference / "index" / f"{figure}.json").read_text()).get("quick", False)
        if not args.check and quick != args.quick:
            mode = "--quick" if quick else "full"
            raise ConfigError(
                "--quick",
                f"the reference's {figure} was made in {mode} mode: run --check {'with' if quick else 'without'} --quick",
            )


def _run(args) -> int:
    return _check(args) if args.check is not None else _regenerate(args)


def _regenerate(args, outdir: str | None = None) -> int:
    from ..figures._reproduce import reproduce

    outdir = outdir or args.outdir or "figures"
    entries = reproduce(
        outdir,
        quick=args.quick,
        only=",".join(args.figures),
        experiments_dir=args.experiments_dir,
        progress=not args.no_progress,
    )
    print(
        f"wrote {len(entries)} figure(s) and {outdir.rstrip('/')}/INDEX.md: "
        + ", ".join(e["figure"] for e in entries),
        file=sys.stderr,
    )
    return 0


def _check(args) -> int:
    from ..figures._check import check_figure, check_table
    from ..figures._reproduce import packaged_figures

    reference = args.reference or "figures"
    temporary = None
    if args.check:
        candidate = args.check
    elif args.outdir:
        candidate = args.outdir
        _regenerate(args, candidate)
    else:
        candidate = temporary = tempfile.mkdtemp(prefix="cpi-theory-check-")
        _regenerate(args, candidate)
    try:
        modules = packaged_figures()
        checks = [check_figure(f, reference, candidate, modules.get(f)) for f in args.figures]
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    print(f"compared {candidate if temporary is None else 'the regenerated figures'} with {reference}:")
    print(check_table(checks))
    agree = all(c.agrees for c in checks)
    print(
        "every number agrees within its tolerance"
        if agree
        else f"{sum(not c.agrees for c in checks)} figure(s) disagree (listed above)"
    )
    return 0 if agree else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="regenerate every figure (F1-F7) and figures/INDEX.md, or --check them against the published ones",
        description="Run the figure definitions shipped in the package (cpi_theory/figures/, from any "
        "directory) with a progress bar, and write INDEX.md with each figure's command and key numbers. "
        "With --check, compare the regenerated figures with the published ones instead.",
        epilog=REPRODUCE_EPILOG,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small configurations (about 1.5 minutes in all, for CI); default: full",
    )
    parser.add_argument(
        "--only", metavar="F1,F3", help="comma-separated figure ids, case-insensitive (default: every figure)"
    )
    parser.add_argument(
        "--outdir",
        help="output directory, created if missing; not an existing file (default: figures; with --check: a "
        "temporary folder, removed afterwards)",
    )
    parser.add_argument(
        "--experiments-dir",
        metavar="DIR",
        help="run the fN_*.py files of DIR (e.g. experiments/) instead of the package's figures (default: "
        "the package's)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown on stderr)"
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="DIR",
        help="compare with --reference instead of only writing: without DIR, regenerate first (into --outdir "
        "or a temporary folder); with DIR, compare that already regenerated folder. Exit 1 on a disagreement (default: no comparison)",
    )
    parser.add_argument(
        "--reference",
        metavar="DIR",
        help="with --check: the published figures to compare with (default: figures, in a clone)",
    )
    parser.set_defaults(func=_run, validate=_validate)
