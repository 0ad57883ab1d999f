"""``cpi-theory appendix``: regenerate paper_appendix/ (LaTeX + Markdown, and a PDF when LaTeX is installed)."""

import sys

from ._manual import APPENDIX_EPILOG
from ._paths import check_output_dir
from ._status import status


def _validate(args) -> None:
    check_output_dir("--outdir", args.outdir)


def _run(args) -> int:
    with status("appendix", "deriving the equations and running the simulations", "about 50 s on 2 cores"):
        from ..paper._appendix import write_appendix

        paths = write_appendix(args.outdir, pdf=not args.no_pdf)
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "appendix",
        help="regenerate the paper appendix from the sympy objects and fresh simulations",
        description="Write appendix.tex and appendix.md (equations from sympy, numbers predicted vs "
        "simulated); build appendix.pdf when latexmk or pdflatex is on PATH.",
        epilog=APPENDIX_EPILOG,
    )
    parser.add_argument(
        "--outdir",
        default="paper_appendix",
        help="output folder, created if missing; not an existing file (default: paper_appendix)",
    )
    parser.add_argument("--no-pdf", action="store_true", help="do not try to build the PDF (default: try)")
    parser.set_defaults(func=_run, validate=_validate)
