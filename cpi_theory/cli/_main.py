"""The ``cpi-theory`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser and sets
``func`` (a callable taking the parsed args and returning an exit code) and, where there is input to check,
``validate`` (a callable that raises on bad input). Start-up stays light: this module and every
``register`` / ``validate`` import only the standard library and the package's light modules (errors,
``Config``), so ``--help``, argument errors and refused input answer in well under a second; JAX and the
plotting stack are imported inside ``func``, after ``validate`` has passed (``tests/test_cli_startup.py``).

Bad input raises :class:`cpi_theory.ConfigError` (or ``ValueError``); it is reported on one line with exit
code 2, as argparse's own errors are.
"""

import argparse
import sys

from .._errors import ConfigError, DivergenceError, Float64Required
from ._advise import register as register_advise
from ._appendix import register as register_appendix
from ._bridge import register as register_bridge
from ._forecast import register as register_forecast
from ._parser import Parser
from ._reproduce import register as register_reproduce
from ._simulate import register as register_simulate
from ._sweep import register as register_sweep

# The subcommands, in the order ``cpi-theory --help`` lists them.
_REGISTER = (
    register_simulate,
    register_sweep,
    register_bridge,
    register_forecast,
    register_advise,
    register_reproduce,
    register_appendix,
)

DESCRIPTION = """\
Context-parametric inversion: the exact toy-model theory, its figures, parameter sweeps, the bridge to
small real transformers and a mitigation advisor. Every command computes in float64 on the CPU (or the
accelerators JAX finds). `cpi-theory COMMAND --help` is the manual of each command: every option with its
meaning, default and range, and the format of what it writes.

exit codes: 0 done; 1 a run failed (diverged, lost precision); 2 bad input (one line on stderr naming the
option or key and the rule; nothing is computed or written); 130 interrupted (Ctrl-C; no partial file)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cpi-theory", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTER:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verb = getattr(args, "verb", args.command)
    try:
        validate = getattr(args, "validate", None)
        if validate is not None:
            validate(args)  # light: every refusal comes before JAX is imported
        from .._interrupt import install as install_interrupt_handler
        from .._precision import enable_float64

        enable_float64()
        install_interrupt_handler()  # Ctrl-C is remembered even where Python swallows it (_interrupt.py)
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, IsADirectoryError, FileExistsError) as err:
        print(f"cpi-theory {verb}: error: {err}", file=sys.stderr)
        return 2
    except (DivergenceError, Float64Required) as err:
        print(f"cpi-theory {verb}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cpi-theory {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
