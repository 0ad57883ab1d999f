"""``cpi-theory simulate``: one run of the toy model; the trajectory JSON to a file (or stdout with
``--json``), the one-line summary on stderr."""

import argparse
import json
import os
import pathlib
import sys

from .._atomic import replace_atomically
from .._errors import ConfigError
from ..config._config import Config
from ._exit import exit_at_once_on_interrupt
from ._manual import simulate_epilog
from ._paths import check_output_file

# The engines of cpi_theory.simulation.ENGINES (not imported here: that module loads JAX; a test checks
# that the two agree).
ENGINE_CHOICES = ("full", "reduced")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def parse_set(items: list[str]) -> dict:
    """``key=value`` pairs; values are JSON literals (``0.5``, ``10``), anything else stays a string."""
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", f"expected key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def config_from_args(args) -> Config:
    base = Config.from_json_file(args.config) if args.config else Config()
    return Config.from_mapping(parse_set(args.set or []), base=base)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE.json",
        help="a JSON object of configuration keys (a trajectory file works too: its config is used); "
        "default: every key at its default",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="set one configuration key (repeatable; applied after --config); the keys are listed below (default: none)",
    )


def _validate(args) -> None:
    args.resolved_config = config = config_from_args(args)
    if config.steps < 1:
        raise ConfigError(
            "steps",
            f"must be >= 1 for simulate (M_C's summary needs at least 2 recorded points), got {config.steps}",
        )
    if args.out:
        check_output_file("--out", args.out)
    if args.plot:
        check_output_file("--plot", args.plot, suffixes=PLOT_SUFFIXES)
    if args.out and args.plot and pathlib.Path(args.out).absolute() == pathlib.Path(args.plot).absolute():
        raise ConfigError("--plot", "must differ from --out")


@exit_at_once_on_interrupt("simulate")
def _run(args) -> int:
    from ..simulation import simulate

    traj = simulate(args.resolved_config, engine=args.engine, progress=True)
    text = traj.to_json() + "\n"
    if args.out:
        _write_atomic(args.out, lambda tmp: pathlib.Path(tmp).write_text(text))
    if args.json:
        sys.stdout.write(text)
    if args.plot:
        from ..figures._plotting import plot_trajectory

        _write_atomic(args.plot, lambda tmp: plot_trajectory(traj, tmp))
    print(traj.summary_line(), file=sys.stderr)
    if not (args.out or args.json):
        print(
            "cpi-theory simulate: the trajectory was not saved: add --out FILE.json to write it "
            "(or --json to print it)",
            file=sys.stderr,
        )
    return 0


def _write_atomic(path: str, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it: an interrupted write (Ctrl-C, a
    kill) leaves no partial file. The temporary name keeps the suffix (the plot's format comes from it)."""
    target = pathlib.Path(path)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    replace_atomically(target, lambda t: write(str(t)), tmp)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="train the toy model from its pretrained state and record the trajectory",
        description="Train the toy model of SPEC.md (W_KQ and W_V, d x d) by exact full-batch gradient "
        "descent from its pretrained state and record, at every recorded step, the context reliance M_C "
        "on a counterfactual test point, attention, accuracies and the loss per data class. Prints the "
        "one-line summary (start, peak, final M_C); --out writes the whole trajectory.",
        epilog=simulate_epilog(),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--engine",
        default="full",
        choices=ENGINE_CHOICES,
        help="full: the d x d model (default); reduced: the exact class-level dynamics (same numbers to "
        "~1e-15, cost independent of the sizes; accepts real class counts)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE.json",
        help="write the trajectory JSON here (the folder must exist; an existing file is replaced "
        "atomically; default: not written)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the trajectory JSON to stdout (with or without --out)"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the trajectory; .png, .pdf or .svg, the format follows the name (default: no plot)",
    )
    parser.set_defaults(func=_run, validate=_validate)
