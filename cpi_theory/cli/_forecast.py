"""``cpi-theory forecast``: the toy's posterior predictive for a curve's later steps (:mod:`cpi_theory.forecast`).

The curve file is read and checked here with the standard library only (every refusal before JAX and NumPy
are imported: an empty file, a header without rows, too few points, steps not increasing, values outside
[0, 1], ``--until`` past the data, a ``--horizon`` out of range).
"""

import csv
import json
import math
from pathlib import Path

from .._errors import ConfigError
from ._manual import FORECAST_EPILOG
from ._parser import number_type
from ._paths import check_input_file, check_output_dir
from ._status import status

# As in cpi_theory.forecast._forecast (importing it loads JAX); a test checks that they agree.
MIN_FIT_POINTS = 5
HORIZON_FACTOR = 20
NOISE_CHOICES = ("ou", "white")


def _number(path: Path, column: str, text, record: int) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(column, f"{path}: must be a number, got {text!r} at record {record}") from None
    if not math.isfinite(value):
        raise ConfigError(column, f"{path}: must be finite, got {text!r} at record {record}")
    return value


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """(steps, values) of a curve file (CSV or JSON, as ``bridge fit`` reads), checked: at least 3 points
    (the forecast needs 5 before its origin), steps >= 0 and strictly increasing, values in [0, 1]."""
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ConfigError("curve", f"{path}: the file is empty")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"step", "context_reliance"} <= set(reader.fieldnames):
            raise ConfigError("curve", f"{path}: CSV needs a header with step and context_reliance")
        rows = [r for r in reader if any((v or "").strip() for v in r.values())]
        raw = [(r["step"], r["context_reliance"]) for r in rows]
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError("curve", f"{path}: neither .csv nor valid JSON ({err.msg})") from None
        if isinstance(data, dict) and "step" not in data and isinstance(data.get("real"), dict):
            data = data["real"]
        if isinstance(data, list):
            if not all(isinstance(r, dict) and "step" in r and "context_reliance" in r for r in data):
                raise ConfigError("curve", f"{path}: records need step and context_reliance")
            raw = [(r["step"], r["context_reliance"]) for r in data]
        elif (
            isinstance(data, dict)
            and isinstance(data.get("step"), list)
            and isinstance(data.get("context_reliance"), list)
        ):
            if len(data["step"]) != len(data["context_reliance"]):
                raise ConfigError("curve", f"{path}: step and context_reliance differ in length")
            raw = list(zip(data["step"], data["context_reliance"], strict=True))
        else:
            raise ConfigError("curve", f"{path}: JSON needs step and context_reliance lists")
    if not raw:
        raise ConfigError("curve", f"{path}: no data rows (need at least {MIN_FIT_POINTS} points)")
    steps = [_number(path, "step", s, i + 1) for i, (s, _) in enumerate(raw)]
    values = [_number(path, "context_reliance", v, i + 1) for i, (_, v) in enumerate(raw)]
    if len(steps) < 3:
        raise ConfigError(
            "curve", f"{path}: {len(steps)} data row(s); need at least {MIN_FIT_POINTS} points to forecast"
        )
    for i, s in enumerate(steps):
        if s < 0:
            raise ConfigError("step", f"{path}: must be >= 0, got {s:g} at record {i + 1}")
        if i and s <= steps[i - 1]:
            raise ConfigError(
                "step",
                f"{path}: must be strictly increasing, got {s:g} after {steps[i - 1]:g} at record {i + 1}",
            )
    for i, v in enumerate(values):
        if not 0.0 <= v <= 1.0:
            raise ConfigError("context_reliance", f"{path}: must lie in [0, 1], got {v:g} at record {i + 1}")
    return steps, values


def _validate(args) -> None:
    path = check_input_file("curve", args.curve)
    check_output_dir("--out", args.out)
    steps, _ = read_curve(path)
    if args.until > steps[-1]:
        raise ConfigError("--until", f"{args.until:g} is past the data (its last step is {steps[-1]:g})")
    fitted = [s for s in steps if s <= args.until]
    if len(fitted) < MIN_FIT_POINTS:
        raise ConfigError(
            "--until",
            f"need at least {MIN_FIT_POINTS} points at or before it, got {len(fitted)} (first steps: "
            f"{', '.join(f'{s:g}' for s in steps[:MIN_FIT_POINTS])})",
        )
    origin = fitted[-1]
    horizon = args.horizon
    if horizon is None and origin == steps[-1]:
        raise ConfigError(
            "--horizon", "required when --until is at the last measured step (nothing after it)"
        )
    horizon = steps[-1] if horizon is None else horizon
    limit = steps[0] + HORIZON_FACTOR * (origin - steps[0])
    if not origin < horizon <= limit:
        raise ConfigError(
            "--horizon",
            f"must lie after the origin {origin:g} and at most {HORIZON_FACTOR}x the fitted span "
            f"from the first step ({limit:g}), got {horizon:g}",
        )


def _run(args) -> int:
    from .._atomic import replace_atomically
    from ..fit import load_trajectory
    from ..forecast import SMCSettings, forecast, plot_forecast

    steps, values = load_trajectory(args.curve)
    settings = SMCSettings(
        particles=args.particles, replicas=args.replicas, mutations=args.mutations, reference=args.reference
    )
    with status(
        "forecast", "sampling the toy's posterior", "about 30 s on 2 cores, longer when they are shared"
    ):
        report = forecast(
            steps,
            values,
            until=args.until,
            horizon=args.horizon,
            below=args.below,
            settings=settings,
            noise=args.noise,
            seed=args.seed,
            source=str(args.curve),
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "forecast.json"
    text = json.dumps(report, indent=1) + "\n"
    replace_atomically(path, lambda tmp: tmp.write_text(text), out / ".forecast.json.tmp")
    figures = plot_forecast(report, out / "forecast")
    _print(report)
    print(f"wrote {path} and {', '.join(str(f) for f in figures)}")
    return 0


def _print(r: dict) -> None:
    post, fc = r["posterior"], r["forecast"]
    fitted = sum(r["data"]["fitted"])
    rhat = "-" if post.get("max_rhat") is None else f"{post['max_rhat']:.3f}"
    print(
        f"fitted {fitted} points up to step {r['until']:g}: posterior by SMC ({post['replicas']} x "
        f"{post['particles_per_replica']} particles), R-hat max {rhat}, ESS min {post['min_ess']:.0f}"
    )
    k = -1
    print(
        f"at step {fc['step'][k]:g}: median {fc['median'][k]:.3f}, 50% [{fc['q25'][k]:.3f}, {fc['q75'][k]:.3f}], "
        f"90% [{fc['q05'][k]:.3f}, {fc['q95'][k]:.3f}]; persistence {fc['persistence'][k]:.3f}, smooth "
        f"{fc['smooth'][k]:.3f}, stacked {fc['stacked'][k]:.3f}"
    )
    lim = r["late_time_limit"]
    if lim["median"] is not None:
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in lim["kind_probability"].items())
        print(
            f"late-time limit: {lim['median']:.3f} (90%: {lim['q05']:.3f} to {lim['q95']:.3f}); kind: {kinds}"
        )
    peak, below = r["peak"], r["below"]
    print(
        f"P(already peaked) {peak['p_already_peaked']:.2f}; P(falls below {below['value']:.3g} by step "
        f"{r['horizon']:g}) {below['p_ever']:.2f}"
    )
    w = r["stacking"]["weights"]
    print(
        f"stacking weights: toy {w['toy']:.2f}, persistence {w['persistence']:.2f}, smooth {w['smooth']:.2f}"
    )
    print(f"residuals: {r['misspecification']['statement']}")
    if r["holdout"]:
        h = r["holdout"]
        e = h["rmse"]
        print(
            f"held out ({h['n_points']} points): RMSE median {e['toy']:.4f}, persistence {e['persistence']:.4f}, "
            f"smooth {e['smooth']:.4f}, stacked {e['stacked']:.4f}; the 90% band covers {h['coverage90']:.0%}, "
            f"the 50% band {h['coverage50']:.0%}"
        )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="forecast a finetuning run's M_C curve from its first checkpoints (posterior predictive)",
        description="Fit the toy family's posterior to the points of a measured M_C curve up to --until and "
        "forecast the later steps: the posterior predictive median with 50% and 90% bands, the late-time "
        "limit, the probability that the curve has already peaked or will fall below a value, beside "
        "persistence and a smooth baseline with stacking weights; measured points after --until are scored.",
        epilog=FORECAST_EPILOG,
    )
    parser.add_argument("curve", help="CSV with step,context_reliance columns, or JSON (see below)")
    parser.add_argument(
        "--until", type=number_type("--until", low=0.0), required=True, metavar="STEP",
        help="fit the points at steps <= STEP (at least 5 of them) and forecast the rest (required)",
    )  # fmt: skip
    parser.add_argument(
        "--horizon", type=number_type("--horizon", low=0.0), default=None, metavar="STEP",
        help=f"the last step to forecast, after --until and at most {HORIZON_FACTOR}x the fitted span "
        "(default: the last measured step)",
    )  # fmt: skip
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory, created if missing; not an existing file",
    )
    parser.add_argument(
        "--below", type=number_type("--below", low=0.0, high=1.0), default=None, metavar="M",
        help="report the probability that M_C falls below M by the horizon, in [0, 1] (default: the first "
        "measured value)",
    )  # fmt: skip
    parser.add_argument(
        "--noise", choices=NOISE_CHOICES, default="ou",
        help="the residual model: ou (correlated, its correlation fitted) or white (default: ou)",
    )  # fmt: skip
    parser.add_argument(
        "--particles", type=number_type("--particles", low=16, integer=True), default=256, metavar="N",
        help="SMC particles per replica, an integer >= 16 (default 256)",
    )  # fmt: skip
    parser.add_argument(
        "--replicas", type=number_type("--replicas", low=2, integer=True), default=4, metavar="N",
        help="independent SMC runs, an integer >= 2 (R-hat compares them; default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--mutations", type=number_type("--mutations", low=1, integer=True), default=25, metavar="N",
        help="random-walk moves per SMC stage, an integer >= 1 (default 25)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", type=number_type("--reference", low=0.0, high=1.0), default=1.0, metavar="SHARE",
        help="where the tempering starts: this share of a Gaussian around the least-squares fit, the rest the "
        "prior, in [0, 1] (0: the prior alone; default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=number_type("--seed", low=0, integer=True), default=0, metavar="N",
        help="seed of the sampler and the predictive paths, an integer >= 0 (default 0)",
    )  # fmt: skip
    parser.set_defaults(func=_run, validate=_validate, verb="forecast")
