"""The argument parser of every ``cpi-theory`` command: one-line errors, help laid out as written."""

import argparse
import sys
import textwrap

WIDTH = 110


class HelpFormatter(argparse.HelpFormatter):
    """Option help is wrapped; in descriptions and epilogs, a paragraph (lines between blank lines) is
    wrapped unless one of its lines is indented, as tables and examples are: those keep their layout."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=30, width=WIDTH)

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines[1:]) or any(
                line.startswith(" ") for line in lines[:1]
            ):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(lines), width, initial_indent=indent,
                                                subsequent_indent=indent))  # fmt: skip
        return "\n\n".join(paragraphs)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, as the package's other refusals are:
    ``cpi-theory simulate: error: argument --engine: invalid choice ...``, exit code 2. Subcommand parsers
    are made by ``add_subparsers`` with the parent's class, so every command gets this."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")
        sys.exit(2)


def number_type(flag: str, *, low: float | int | None = None, high: float | int | None = None, integer: bool = False,
                low_open: bool = False, high_open: bool = False, rule: str = ""):  # fmt: skip
    """An argparse ``type`` for a finite number in a range (NaN and infinities refused), integer if asked;
    its refusal names the flag and states the rule."""

    def describe() -> str:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high:g}")
        kind = "an integer" if integer else "a finite number"
        return (
            f"must be {kind}" + (" " + " and ".join(parts) if parts else "") + (f" ({rule})" if rule else "")
        )

    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{describe()}, got {text!r}") from None
        bad = value != value or value in (float("inf"), float("-inf"))
        if integer and not bad:
            bad = not value.is_integer()
        if not bad and low is not None:
            bad = value <= low if low_open else value < low
        if not bad and high is not None:
            bad = value >= high if high_open else value > high
        if bad:
            raise argparse.ArgumentTypeError(f"{describe()}, got {text!r}")
        return int(value) if integer else value

    parse.__name__ = flag  # argparse names the type in some messages
    return parse
