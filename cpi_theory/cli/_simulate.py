"""``cpi-theory simulate``: one run of the toy model, JSON out, one-line summary on stderr."""

import argparse
import json
import os
import pathlib
import sys

from .._atomic import replace_atomically
from .._errors import ConfigError
from ..config._config import Config
from ._exit import exit_at_once_on_interrupt


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
    parser.add_argument("--config", metavar="FILE.json", help="JSON object of config overrides")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)"
    )


@exit_at_once_on_interrupt("simulate")
def _run(args) -> int:
    from ..simulation import ENGINES, simulate

    if args.engine not in ENGINES:
        raise ConfigError("--engine", f"must be one of {sorted(ENGINES)}, got {args.engine!r}")
    config = config_from_args(args)
    traj = simulate(config, engine=args.engine, progress=True)
    if args.out:
        _write_atomic(args.out, lambda tmp: pathlib.Path(tmp).write_text(traj.to_json() + "\n"))
    else:
        sys.stdout.write(traj.to_json() + "\n")
    if args.plot:
        from ..figures._plotting import plot_trajectory

        _write_atomic(args.plot, lambda tmp: plot_trajectory(traj, tmp))
    print(traj.summary_line(), file=sys.stderr)
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
        description="Train the toy model of SPEC.md by exact full-batch GD; print or write the trajectory JSON.",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--engine", default="full", help="full (d x d model) or reduced (exact class dynamics)"
    )
    parser.add_argument("--out", metavar="FILE.json", help="write the trajectory here (default: stdout)")
    parser.add_argument("--plot", metavar="FILE.png", help="also plot the trajectory (PNG or PDF)")
    parser.set_defaults(func=_run)
