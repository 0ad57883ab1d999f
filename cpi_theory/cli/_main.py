"""The ``cpi-theory`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser and sets
``func`` (a callable taking the parsed args and returning an exit code). Bad input raises
:class:`cpi_theory.ConfigError` (or ``ValueError``); it is reported on one line with exit code 2.
"""

import argparse
import importlib
import sys

from .._errors import ConfigError, DivergenceError, Float64Required

# One entry per subcommand module; each exposes register(subparsers).
_SUBCOMMAND_MODULES = (
    "cpi_theory.cli._simulate",
    "cpi_theory.cli._sweep",
    "cpi_theory.cli._bridge",
    "cpi_theory.cli._reproduce",
    "cpi_theory.cli._appendix",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpi-theory",
        description="Context-parametric inversion: exact toy-model theory, experiments, sweeps and bridge.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .._precision import enable_float64

    enable_float64()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, IsADirectoryError) as err:
        print(f"cpi-theory {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (DivergenceError, Float64Required) as err:
        print(f"cpi-theory {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cpi-theory {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
