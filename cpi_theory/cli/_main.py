"""The ``cpi-theory`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser and sets
``func`` (a callable taking the parsed args and returning an exit code). Bad input raises
:class:`cpi_theory.ConfigError` (or ``ValueError``); it is reported on one line with exit code 2.
"""

import argparse
import sys

from .._errors import ConfigError, DivergenceError, Float64Required
from .._interrupt import install as install_interrupt_handler
from ._advise import register as register_advise
from ._appendix import register as register_appendix
from ._bridge import register as register_bridge
from ._reproduce import register as register_reproduce
from ._simulate import register as register_simulate
from ._sweep import register as register_sweep

# The subcommands, in the order ``cpi-theory --help`` lists them.
_REGISTER = (
    register_simulate,
    register_sweep,
    register_bridge,
    register_advise,
    register_reproduce,
    register_appendix,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpi-theory",
        description="Context-parametric inversion: exact toy-model theory, experiments, sweeps and bridge.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTER:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .._precision import enable_float64

    enable_float64()
    install_interrupt_handler()  # Ctrl-C is remembered even where Python swallows it (_interrupt.py)
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
