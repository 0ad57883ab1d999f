"""``cpi-theory appendix``: regenerate paper_appendix/ (LaTeX + Markdown, and a PDF when LaTeX is installed)."""

import sys


def _run(args) -> int:
    from ..paper._appendix import write_appendix

    for path in write_appendix(args.outdir, pdf=not args.no_pdf):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "appendix",
        help="regenerate the paper appendix from the sympy objects and fresh simulations",
        description="Write appendix.tex and appendix.md (equations from sympy, numbers predicted vs simulated); "
        "build appendix.pdf when latexmk or pdflatex is on PATH.",
    )
    parser.add_argument("--outdir", default="paper_appendix", help="output folder (default: paper_appendix)")
    parser.add_argument("--no-pdf", action="store_true", help="do not try to build the PDF")
    parser.set_defaults(func=_run)
