"""``cpi-theory bridge run|fit``: the bridge from the command line."""

import argparse
import sys
import time
from pathlib import Path

from .._errors import ConfigError
from ..bridge._plot import plot_run
from ..bridge._presets import REGIMES, SIZES
from ..bridge._run import fit_report_fields, run_bridge, write_report
from ..bridge._train import OPTIMIZERS, PARAM_SETS
from ..fit import (
    delta_c_for_start,
    fit_curve,
    joint_fit,
    joint_report_fields,
    load_trajectory,
    toy_parameters,
)


def _fraction(key: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key} must be a number, got {text!r}") from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"{key} must lie in [0, 1], got {value}")
        return value

    return parse


def _run(args) -> int:
    overrides = {
        key: value
        for key, value in (
            ("params", args.params),
            ("optimizer", args.optimizer),
            ("lr", args.lr),
            ("steps", args.steps),
            ("measure_every", args.measure_every),
        )
        if value is not None
    }
    started = time.perf_counter()
    report = run_bridge(
        args.size,
        args.regime,
        args.seed,
        cs_fraction=args.cs_fraction,
        s_fraction=args.s_fraction,
        filter_cs=args.filter_cs,
        finetune_overrides=overrides,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
    )
    report["wall_seconds"] = time.perf_counter() - started
    path = write_report(report, args.out)
    figures = plot_run(report, Path(args.out) / "bridge")
    m, p = report["measured"], report["prediction"]["summary"]
    print(
        f"start: delta_M {report['start']['delta_m']:.3f}, delta_C {report['start']['delta_c']:.3f}, "
        f"M_C(0) {report['start']['context_reliance']:.3f}"
    )
    print(
        f"real: {m['shape']} (start {m['start']:.3f}, peak {m['peak']:.3f} at step {m['peak_step']:g}, "
        f"final {m['final']:.3f}); toy predicts: {p['shape']}"
    )
    print(
        f"fit: time scale {report['fit']['time_scale']:.4g} toy-time/step, RMSE {report['fit']['curve_error']:.4f}"
        + (
            f"; extended RMSE {report['extended_fit']['curve_error']:.4f}"
            if report.get("extended_fit")
            else ""
        )
    )
    best = report["best_fit"]
    print(
        f"joint fit (mixture fixed, {', '.join(best['free'])} free): RMSE {best['curve_error']:.4f}, "
        f"shape {best['summary']['shape']}"
    )
    print(f"wrote {path} and {', '.join(str(f) for f in figures)} in {report['wall_seconds']:.1f} s")
    return 0


def _check_fraction_sum(cs_fraction, s_fraction) -> None:
    if (cs_fraction or 0.0) + (s_fraction or 0.0) > 1.0:
        raise ConfigError("s_fraction", "cs_fraction + s_fraction must be <= 1")


def _fit(args) -> int:
    steps, values = load_trajectory(args.trajectory)
    for key in ("delta_m", "delta_c"):
        value = getattr(args, key)
        if value is not None and not 0.0 < value < 1.0:
            raise ConfigError(key, f"must lie in (0, 1), got {value}")
    _check_fraction_sum(args.cs_fraction, args.s_fraction)
    if args.fit_until is not None and not (steps <= args.fit_until).sum() >= 3:
        raise ConfigError("fit_until", f"need at least 3 points at or before step {args.fit_until:g}")
    if args.fit_until is not None and not (steps > args.fit_until).any():
        raise ConfigError("fit_until", f"no point after step {args.fit_until:g} to hold out")
    schedule = None
    if args.warmup_steps or args.decay != "none":
        if args.decay != "none" and (args.total_steps is None or args.total_steps <= args.warmup_steps):
            raise ConfigError("total_steps", "a decay needs --total-steps greater than --warmup-steps")
        schedule = {"warmup": args.warmup_steps, "decay": args.decay, "total": args.total_steps}
    # The a-priori prediction (toy parametrized from what is known, defaults where nothing is): separate
    # from the joint fit.
    delta_m = 0.6 if args.delta_m is None else args.delta_m
    cs_fraction = 0.5 if args.cs_fraction is None else args.cs_fraction
    s_fraction = 0.0 if args.s_fraction is None else args.s_fraction
    if cs_fraction + s_fraction > 1.0:
        cs_fraction = 1.0 - s_fraction
    if args.delta_c is None:
        start = min(max(float(values[0]), 1e-3), 1.0 - 1e-3)
        delta_c = delta_c_for_start(delta_m, start)
    else:
        delta_c = args.delta_c
    params = toy_parameters(delta_m, delta_c, cs_fraction, s_fraction)
    fit = fit_curve(steps, values, params, extensions=not args.no_extensions)
    joint = joint_fit(
        steps,
        values,
        delta_m=args.delta_m,
        delta_c=args.delta_c,
        cs_fraction=args.cs_fraction,
        s_fraction=args.s_fraction,
        lr_v_ratio=None if args.fit_lr_v else args.lr_v_ratio,
        fit_until=args.fit_until,
        schedule=schedule,
        n_starts=args.starts,
        seed=args.seed,
    )
    report = {
        "source": str(args.trajectory),
        "real": {"step": steps.tolist(), "context_reliance": values.tolist()},
        "toy": {"step": fit["fit"]["step"], "context_reliance": fit["fit"]["context_reliance"]},
        **fit_report_fields(fit),
        **joint_report_fields(fit["measured"], joint),
        "mixture": {"cs_fraction": args.cs_fraction, "s_fraction": args.s_fraction},
    }
    path = write_report(report, args.out)
    figures = plot_run(report, Path(args.out) / "fit")
    m = fit["measured"]
    print(
        f"measured: {m['shape']} (start {m['start']:.3f}, peak {m['peak']:.3f} at step {m['peak_step']:g}, "
        f"final {m['final']:.3f})"
    )
    print(
        f"a-priori toy (delta_M {params.delta_m:.3f}, delta_C {params.delta_c:.3f}): predicts "
        f"{fit['prediction']['summary']['shape']}; time-scale-only fit RMSE {fit['fit']['curve_error']:.4f}"
    )
    best = joint["best_fit"]
    b = best["summary"]
    print(
        f"joint fit ({len(best['free'])} free: {', '.join(best['free'])}): RMSE {best['curve_error']:.4f} on "
        f"{best['n_points']} points, shape {b['shape']} (peak {b['peak']:.3f} at step {b['peak_step']:g}, "
        f"final {b['final']:.3f})"
    )
    for name, p in best["parameters"].items():
        interval = (
            "fixed"
            if p["fixed"]
            else ("no interval" if p["low"] is None else f"95% [{p['low']:.4g}, {p['high']:.4g}]")
        )
        print(f"  {name:13s} {p['value']:.4g}  {interval}")
    for line in best["uncertainty"]["undetermined"]:
        print(f"  not determined: {line}")
    if joint["holdout"]:
        h = joint["holdout"]
        print(
            f"held out ({h['n_points']} points after step {args.fit_until:g}): toy {h['curve_error']:.4f}, "
            f"persistence {h['persistence_error']:.4f}, smooth ({h['smooth_parameters']} parameters) "
            f"{h['smooth_error']:.4f}: {h['winner']} wins"
        )
    for note in params.notes + tuple(best["notes"]):
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {path} and {', '.join(str(f) for f in figures)}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bridge",
        help="train small real transformers and map the toy onto them",
        description="The bridge: real transformers under the toy's data mixtures, and the toy fitted to them.",
    )
    sub = parser.add_subparsers(dest="bridge_command", required=True, metavar="BRIDGE_COMMAND")

    run = sub.add_parser("run", help="pretrain, finetune, measure and fit one cell; writes DIR/report.json")
    run.add_argument(
        "--size",
        default="tiny",
        choices=[s for s in SIZES if s != "micro"] + ["micro"],
        help="tiny: 2-core CPU, about a minute; small/base: GPU sizes; micro: tests only",
    )
    run.add_argument("--out", required=True, help="output directory (report.json, bridge.png/.pdf)")
    run.add_argument(
        "--regime", default="moderate", choices=sorted(REGIMES), help="pretrained copying regime"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--cs-fraction", type=_fraction("cs_fraction"), default=0.5)
    run.add_argument("--s-fraction", type=_fraction("s_fraction"), default=0.0)
    run.add_argument("--filter-cs", action="store_true", help="mitigation: drop the C+S points")
    run.add_argument("--params", choices=PARAM_SETS, help="finetune all parameters or only query/key")
    run.add_argument("--optimizer", choices=OPTIMIZERS, help="gd = full-batch gradient descent")
    run.add_argument("--lr", type=float)
    run.add_argument("--steps", type=int)
    run.add_argument("--measure-every", type=int)
    run.add_argument("--checkpoint", help="pretrained checkpoint directory: loaded if present, else written")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=_run)

    fit = sub.add_parser("fit", help="fit the toy to an external trajectory (CSV or JSON of step, M_C)")
    fit.add_argument("trajectory", help="CSV with step,context_reliance columns, or JSON")
    fit.add_argument("--out", required=True)
    fit.add_argument(
        "--delta-m", type=float, default=None, help="memorization strength: fixed if given, else fitted"
    )
    fit.add_argument(
        "--delta-c", type=float, default=None, help="copying strength: fixed if given, else fitted"
    )
    fit.add_argument("--cs-fraction", type=_fraction("cs_fraction"), default=None, help="fixed if given")
    fit.add_argument("--s-fraction", type=_fraction("s_fraction"), default=None, help="fixed if given")
    fit.add_argument("--lr-v-ratio", type=float, default=0.0, help="lr_v / lr_kq, fixed (default 0)")
    fit.add_argument(
        "--fit-lr-v", action="store_true", help="fit lr_v / lr_kq too (its toy regime compiles for minutes)"
    )
    fit.add_argument("--fit-until", type=float, default=None, help="fit on steps <= STEP, report the rest")
    fit.add_argument("--warmup-steps", type=float, default=0.0, help="real run's linear warmup (steps)")
    fit.add_argument("--decay", choices=("none", "linear", "cosine"), default="none", help="real run's decay")
    fit.add_argument("--total-steps", type=float, default=None, help="step where the decay reaches 0")
    fit.add_argument("--starts", type=int, default=8, help="least-squares starts of the joint fit")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--no-extensions", action="store_true", help="a-priori side: fit the time scale only")
    fit.set_defaults(func=_fit)
