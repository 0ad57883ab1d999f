"""``cpi-theory bridge run|fit``: the bridge from the command line.

Every option is checked here, before the transformer stack (Flax, optax, JAX) is imported and before any
pretraining or fitting; the bridge's own configuration objects are then built once more, still before any
work, as a second line of defence.
"""

import sys
import time
from pathlib import Path

from .._errors import ConfigError
from ._manual import BRIDGE_FIT_EPILOG, BRIDGE_RUN_EPILOG
from ._parser import number_type
from ._paths import check_input_file, check_output_dir
from ._status import status

# The choices of cpi_theory.bridge (SIZES, REGIMES, OPTIMIZERS, PARAM_SETS) and the tiny size's finetuning
# preset, spelled here because importing the bridge loads the transformer stack (seconds); a test checks
# that they agree with the bridge.
SIZE_CHOICES = ("tiny", "small", "base", "micro")
REGIME_CHOICES = ("moderate", "strong", "weak")
OPTIMIZER_CHOICES = ("gd", "sgd", "adam")
PARAM_CHOICES = ("all", "qk")
TINY_FINETUNE = {"optimizer": "adam", "lr": 3e-4, "steps": 100, "measure_every": 5, "params": "all"}
DECAYS = ("none", "linear", "cosine")
# Round two's designs (cpi_theory.bridge.DESIGN_NAMES) and their cell counts; a test checks they agree.
DESIGN_CELLS = {"V1": 4, "V2": 2, "V3": 2}

_fraction = lambda flag: number_type(flag, low=0.0, high=1.0, rule="a share of the finetuning points")


def _check_fraction_sum(cs_fraction, s_fraction) -> None:
    if (cs_fraction or 0.0) + (s_fraction or 0.0) > 1.0:
        raise ConfigError(
            "--s-fraction",
            f"--cs-fraction + --s-fraction must be <= 1 (the rest are C points), got {cs_fraction} + {s_fraction}",
        )


# ---------------------------------------------------------------------------------------------- run
def _validate_run(args) -> None:
    if args.cell is not None and args.design is None:
        raise ConfigError("--cell", "picks a cell of a --design; give --design too")
    if args.design is not None:
        fixed = [flag for flag, value in (("--params", args.params), ("--optimizer", args.optimizer),
                 ("--lr", args.lr), ("--measure-every", args.measure_every)) if value is not None]  # fmt: skip
        if fixed or args.filter_cs:
            raise ConfigError(
                (fixed or ["--filter-cs"])[0], "the --design fixes its recipe and mixture; drop this option"
            )
        n_cells = DESIGN_CELLS[args.design]
        if args.cell is not None and args.cell >= n_cells:
            raise ConfigError("--cell", f"{args.design} has cells 0 to {n_cells - 1}, got {args.cell}")
    _check_fraction_sum(args.cs_fraction, args.s_fraction)
    if args.filter_cs and args.cs_fraction >= 1.0:
        raise ConfigError(
            "--filter-cs", "filtering the C+S points of a mixture made only of them leaves no data"
        )
    check_output_dir("--out", args.out)
    if args.checkpoint is not None:
        check_output_dir("--checkpoint", args.checkpoint)


def _run_design(args) -> int:
    """One seed of one cell of a round-two design: the gated checkpoint, then every arm of the cell."""
    import dataclasses

    from ..bridge._designs import gate_line, get_design
    from ..bridge._round2 import finetune_arms, gated_checkpoint
    from ..bridge._run import write_json
    from ..bridge._toy_oos import curve_numbers

    design = get_design(args.design, args.size)
    cell = design.cells[args.cell or 0]
    if args.steps is not None:
        recipe = cell.recipe
        recipe = dataclasses.replace(
            recipe,
            steps=args.steps,
            n_measure=min(recipe.n_measure, args.steps),
            warmup=min(recipe.warmup, args.steps - 1),
        )
        cell = dataclasses.replace(cell, recipe=recipe)
    started = time.perf_counter()
    model, start, verdict, seconds = gated_checkpoint(design, cell.model, args.seed, args.checkpoint)
    print(
        f"{design.name} / {cell.name}, seed {args.seed} ({seconds:.0f} s pretraining): {gate_line(verdict)}"
    )
    report = {
        "design": design.name, "size": args.size, "cell": cell.name, "model": cell.model, "seed": args.seed,
        "recipe": cell.recipe.to_dict(), "start": start, "gate": verdict, "arms": {},
    }  # fmt: skip
    if not verdict["passed"]:
        write_json(report, Path(args.out) / "report.json")
        print(f"seed {args.seed} fails the gate: not finetuned (the design uses only seeds that pass)")
        return 1
    trajectories = finetune_arms(design, cell, cell.arms, {args.seed: model})
    for (_, arm), trajectory in trajectories.items():
        numbers = curve_numbers(trajectory["step"], trajectory["context_reliance"])
        report["arms"][arm] = {"numbers": numbers, "trajectory": trajectory}
        print(
            f"{arm}: M_C {numbers['start']:.3f} -> peak {numbers['peak']:.3f} at step {numbers['peak_step']:g} "
            f"-> {numbers['final']:.3f} (depth {numbers['depth']:.3f})"
        )
    report["wall_seconds"] = time.perf_counter() - started
    path = Path(args.out) / "report.json"
    write_json(report, path)
    print(f"wrote {path} in {report['wall_seconds']:.1f} s (one seed; the criterion needs the study's seeds)")
    return 0


def _run(args) -> int:
    if args.design is not None:
        return _run_design(args)
    import dataclasses

    from ..bridge._plot import plot_run
    from ..bridge._presets import fact_world_config, get_size
    from ..bridge._run import run_bridge, write_report

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
    # The bridge's own rules (fact world, finetuning settings), still before any pretraining.
    size = get_size(args.size)
    mixture = dict(cs_fraction=args.cs_fraction, s_fraction=args.s_fraction, filter_cs=args.filter_cs)
    fact_world_config(size, args.regime, args.seed, **mixture)
    dataclasses.replace(size.finetune, seed=args.seed, **overrides)
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


# ---------------------------------------------------------------------------------------------- fit
def _validate_fit(args) -> None:
    path = check_input_file("trajectory", args.trajectory)
    if path.suffix.lower() == ".csv":
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if len(lines) == 1:
            raise ConfigError(
                "trajectory", f"{path}: the CSV has a header but no data rows (need at least 3 points)"
            )
    check_output_dir("--out", args.out)
    if args.delta_m is not None and args.delta_c is not None and not args.delta_m > 2 * args.delta_c:
        raise ConfigError(
            "--delta-m",
            f"must be > 2 x --delta-c (memory beats self-copy, the toy's Assumption 6), got {args.delta_m} "
            f"and {args.delta_c}",
        )
    if args.delta_c is not None and args.delta_m is None and not args.delta_c < 0.49:
        raise ConfigError(
            "--delta-c",
            f"must be < 0.49 (delta_M, fitted in [0.05, 0.98], must exceed 2 delta_C), got {args.delta_c}",
        )
    _check_fraction_sum(args.cs_fraction, args.s_fraction)
    if args.fit_lr_v and args.lr_v_ratio != 0.0:
        raise ConfigError("--lr-v-ratio", "fixes lr_v / lr_kq; --fit-lr-v fits it: give one of the two")
    if args.decay != "none" and (args.total_steps is None or args.total_steps <= args.warmup_steps):
        raise ConfigError("--total-steps", "a --decay needs --total-steps greater than --warmup-steps")
    if args.total_steps is not None and args.decay == "none":
        raise ConfigError("--total-steps", "only with --decay linear or cosine (where the decay reaches 0)")


def _fit(args) -> int:
    from ..bridge._plot import plot_run
    from ..bridge._run import fit_report_fields, write_report
    from ..fit import (
        delta_c_for_start,
        fit_curve,
        joint_fit,
        joint_report_fields,
        load_trajectory,
        toy_parameters,
    )

    steps, values = load_trajectory(args.trajectory)
    if args.fit_until is not None and not (steps <= args.fit_until).sum() >= 3:
        raise ConfigError("--fit-until", f"need at least 3 points at or before step {args.fit_until:g}")
    if args.fit_until is not None and not (steps > args.fit_until).any():
        raise ConfigError("--fit-until", f"no point after step {args.fit_until:g} to hold out")
    schedule = None
    if args.warmup_steps or args.decay != "none":
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
    with status("bridge fit", f"fitting the toy ({args.starts} starts)", "seconds to a minute on 2 cores"):
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
        description="The bridge: real transformers under the toy's data mixtures (run), and the toy fitted to "
        "any measured M_C curve (fit). `cpi-theory bridge run --help` and `cpi-theory bridge fit --help` "
        "describe each.",
    )
    sub = parser.add_subparsers(dest="bridge_command", required=True, metavar="BRIDGE_COMMAND")
    tiny = TINY_FINETUNE

    run = sub.add_parser(
        "run",
        help="pretrain, finetune, measure and fit one cell; writes DIR/report.json and a figure",
        description="Pretrain a small decoder-only transformer on a synthetic fact world (its regime sets how "
        "strongly it copies contexts), finetune it on a C / C+S / S mixture, measure M_C, accuracies and "
        "attention per layer, and fit the toy to the measured curve.",
        epilog=BRIDGE_RUN_EPILOG,
    )
    run.add_argument(
        "--size",
        default="tiny",
        choices=SIZE_CHOICES,
        help="tiny (default): a 2-core CPU, about a minute; small / base: GPU sizes; micro: tests only",
    )
    run.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory, created if missing; not an existing file",
    )
    run.add_argument(
        "--regime",
        default="moderate",
        choices=REGIME_CHOICES,
        help="pretrained copying regime: how much the model copies a context (default: moderate)",
    )
    run.add_argument(
        "--seed", type=number_type("--seed", low=0, integer=True), default=0, metavar="N",
        help="seed of the fact world, the initialization and the minibatches, an integer >= 0 (default 0)",
    )  # fmt: skip
    run.add_argument(
        "--cs-fraction", type=_fraction("--cs-fraction"), default=0.5, metavar="F",
        help="C+S share of the finetuning points, in [0, 1] (default 0.5)",
    )  # fmt: skip
    run.add_argument(
        "--s-fraction", type=_fraction("--s-fraction"), default=0.0, metavar="F",
        help="S share of the finetuning points, in [0, 1], cs + s <= 1; C points take the rest (default 0)",
    )  # fmt: skip
    run.add_argument(
        "--filter-cs",
        action="store_true",
        help="the filtering mitigation: drop the C+S points (default: kept)",
    )
    run.add_argument(
        "--params", choices=PARAM_CHOICES,
        help=f"finetune all parameters or only attention query/key (default: the size's preset, tiny: {tiny['params']})",
    )  # fmt: skip
    run.add_argument(
        "--optimizer", choices=OPTIMIZER_CHOICES,
        help="gd: full-batch gradient descent as in the theory; sgd / adam: minibatches (default: the size's "
        f"preset, tiny: {tiny['optimizer']})",
    )  # fmt: skip
    run.add_argument(
        "--lr", type=number_type("--lr", low=0.0, low_open=True), metavar="LR",
        help=f"finetuning learning rate, > 0 (default: the size's preset, tiny: {tiny['lr']:g})",
    )  # fmt: skip
    run.add_argument(
        "--steps", type=number_type("--steps", low=1, integer=True), metavar="N",
        help=f"finetuning steps, an integer >= 1 (default: the size's preset, tiny: {tiny['steps']})",
    )  # fmt: skip
    run.add_argument(
        "--measure-every", type=number_type("--measure-every", low=1, integer=True), metavar="K",
        help="measure M_C every K finetuning steps, an integer >= 1 (default: the size's preset, tiny: "
        f"{tiny['measure_every']})",
    )  # fmt: skip
    run.add_argument(
        "--checkpoint", metavar="DIR",
        help="pretrained checkpoint directory: loaded if it holds one, else pretraining is saved there "
        "(default: none, pretrain every time)",
    )  # fmt: skip
    run.add_argument(
        "--design", choices=tuple(DESIGN_CELLS),
        help="run one seed of one cell of a round-two design (issue 22, figures/bridge/round2/): the gated "
        "checkpoint, then the cell's arms; uses --size, --seed, --steps, --checkpoint (default: none)",
    )  # fmt: skip
    run.add_argument(
        "--cell", type=number_type("--cell", low=0, integer=True), metavar="I",
        help="with --design: which of its cells, an integer >= 0 (default 0; V1 has 4, V2 and V3 2)",
    )  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on stderr)")
    run.set_defaults(func=_run, validate=_validate_run, verb="bridge run")

    fit = sub.add_parser(
        "fit",
        help="fit the toy to an external trajectory (CSV or JSON of step, M_C)",
        description="Fit the whole toy family jointly to a measured M_C curve (any model's finetuning run): "
        "delta_M, delta_C, the class fractions, the initial attention split and the time scale (optionally "
        "lr_v / lr_kq and the real run's learning-rate schedule), from several starts, with 95% intervals; "
        "beside it the a-priori toy (parametrized from what is given) with its time scale fitted.",
        epilog=BRIDGE_FIT_EPILOG,
    )
    fit.add_argument("trajectory", help="CSV with step,context_reliance columns, or JSON (see below)")
    fit.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory, created if missing; not an existing file",
    )
    fit.add_argument(
        "--delta-m", type=number_type("--delta-m", low=0.0, high=1.0, low_open=True, high_open=True), default=None, metavar="P",
        help="memorization strength delta_M, in (0, 1), > 2 delta_C: fixed if given (default: fitted)",
    )  # fmt: skip
    fit.add_argument(
        "--delta-c", type=number_type("--delta-c", low=0.0, high=1.0, low_open=True, high_open=True), default=None, metavar="P",
        help="copying strength delta_C, in (0, 1): fixed if given (default: fitted)",
    )  # fmt: skip
    fit.add_argument(
        "--cs-fraction", type=_fraction("--cs-fraction"), default=None, metavar="F",
        help="C+S share of the finetuning points, in [0, 1]: fixed if given (default: fitted)",
    )  # fmt: skip
    fit.add_argument(
        "--s-fraction", type=_fraction("--s-fraction"), default=None, metavar="F",
        help="S share, in [0, 1], cs + s <= 1: fixed if given (default: fitted)",
    )  # fmt: skip
    fit.add_argument(
        "--lr-v-ratio", type=number_type("--lr-v-ratio", low=0.0, high=1.0, rule="the fit's box"), default=0.0, metavar="R",
        help="lr_v / lr_kq, in [0, 1], held fixed (default 0: attention-only finetuning)",
    )  # fmt: skip
    fit.add_argument(
        "--fit-lr-v", action="store_true",
        help="fit lr_v / lr_kq in [0, 1] too (its toy regime compiles for minutes; default: fixed)",
    )  # fmt: skip
    fit.add_argument(
        "--fit-until", type=number_type("--fit-until", low=0.0), default=None, metavar="STEP",
        help="fit on the points at steps <= STEP (>= 3 of them) and report the error on the rest against "
        "persistence and a smooth curve (default: fit every point)",
    )  # fmt: skip
    fit.add_argument(
        "--warmup-steps", type=number_type("--warmup-steps", low=0.0), default=0.0, metavar="STEPS",
        help="the real run's linear learning-rate warmup, in steps, >= 0 (default 0)",
    )  # fmt: skip
    fit.add_argument(
        "--decay", choices=DECAYS, default="none",
        help="the real run's learning-rate decay after the warmup, to 0 at --total-steps (default: none)",
    )  # fmt: skip
    fit.add_argument(
        "--total-steps", type=number_type("--total-steps", low=0.0, low_open=True), default=None, metavar="STEP",
        help="with --decay: the step where the learning rate reaches 0, > --warmup-steps (default: none)",
    )  # fmt: skip
    fit.add_argument(
        "--starts", type=number_type("--starts", low=1, integer=True), default=8, metavar="N",
        help="least-squares starts of the joint fit, an integer >= 1 (default 8; more: slower, surer)",
    )  # fmt: skip
    fit.add_argument(
        "--seed", type=number_type("--seed", low=0, integer=True), default=0, metavar="N",
        help="seed of the random starts, an integer >= 0 (default 0)",
    )  # fmt: skip
    fit.add_argument(
        "--no-extensions", action="store_true",
        help="a-priori side: fit the time scale only (default: also the initial split and lr_v / lr_kq)",
    )  # fmt: skip
    fit.set_defaults(func=_fit, validate=_validate_fit, verb="bridge fit")
