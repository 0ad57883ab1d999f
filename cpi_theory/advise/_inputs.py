"""The advisor's inputs: their rules, and the ones a ``cpi-theory bridge fit`` report supplies.

Every rule names the offending field, as :class:`cpi_theory.ConfigError` does for the configuration; the
toy's own rules (0 < delta_C, 2 delta_C < delta_M < 1) are left to :class:`cpi_theory.Config`, whose
errors name ``delta_c`` / ``delta_m``.
"""

import dataclasses
import math

from .._errors import ConfigError
from ..config._config import Config, read_json_file
from ..config._params import ClassSizes

# The horizon above which the advisor refuses: the cost of one run grows linearly with it and a root
# search makes ~50 runs per mitigation, so 1e7 steps already means hours on a CPU.
MAX_HORIZON = 10_000_000
BIAS_BOUND = 40.0  # |context_bias| searched for --start-mc: scores +-20 stay far above the relation's -30
# C + C+S + S points of the fit's toy mixture (cpi_theory.fit.TOY_POINTS, which the fit's fractions are
# shares of; not imported: the CLI checks advise's inputs before JAX loads).
FIT_POINTS = 20


def _number(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(key, f"must be finite, got {value!r}")
    return value


def check_fraction(key: str, value) -> float:
    value = _number(key, value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(key, f"must lie in [0, 1] (a share of the training points), got {value}")
    return value


def check_mixture(cs_fraction, s_fraction) -> tuple[float, float]:
    cs, s = check_fraction("cs_fraction", cs_fraction), check_fraction("s_fraction", s_fraction)
    if cs + s > 1.0 + 1e-12:
        raise ConfigError(
            "s_fraction",
            f"cs_fraction + s_fraction must be <= 1 (the rest are C points), got {cs} + {s} = {cs + s}",
        )
    if s >= 1.0:
        raise ConfigError("s_fraction", "must be < 1: the toy needs points with a context (C or C+S)")
    return cs, s


def check_horizon(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ConfigError("horizon", f"must be a positive integer number of toy steps, got {value!r}")
    value = int(value)
    if value < 1:
        raise ConfigError("horizon", f"must be a positive integer number of toy steps, got {value}")
    if value > MAX_HORIZON:
        raise ConfigError(
            "horizon",
            f"must be <= {MAX_HORIZON:.0e} toy steps (each run costs time linear in the horizon and the "
            f"advisor makes ~200 runs), got {value}",
        )
    return value


def check_open_unit(key: str, value) -> float:
    value = _number(key, value)
    if not 0.0 < value < 1.0:
        raise ConfigError(key, f"must lie strictly between 0 and 1 (a context reliance M_C), got {value}")
    return value


def check_positive(key: str, value) -> float:
    value = _number(key, value)
    if value <= 0:
        raise ConfigError(key, f"must be > 0, got {value}")
    return value


def check_nonnegative(key: str, value) -> float:
    value = _number(key, value)
    if value < 0:
        raise ConfigError(key, f"must be >= 0 (a ratio of learning rates), got {value}")
    return value


def _value(parameters: dict, name: str, path) -> float:
    entry = parameters.get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            "--from-fit",
            f"{path}: best_fit.parameters.{name}.value is missing or not a finite number (is it the "
            "report.json of `cpi-theory bridge fit`?)",
        )
    return float(value)


def fit_inputs(path) -> dict:
    """The advisor's inputs from the ``report.json`` written by ``cpi-theory bridge fit``: its joint fit's
    best parameters (delta_m, delta_c, cs_fraction, s_fraction of the toy's 20 points, context_bias,
    lr_v_ratio), its ``time_scale`` (toy steps per real step) and ``horizon``: the measured run's span in
    toy steps (None when the real run had a learning-rate schedule: its clock is not linear)."""
    report = read_json_file(path, "--from-fit")
    best = report.get("best_fit") if isinstance(report, dict) else None
    parameters = best.get("parameters") if isinstance(best, dict) else None
    if not isinstance(parameters, dict):
        raise ConfigError(
            "--from-fit",
            f"{path}: no best_fit.parameters object (is it the report.json of `cpi-theory bridge fit`?)",
        )
    values = {
        name: _value(parameters, name, path)
        for name in (
            "delta_m",
            "delta_c",
            "cs_fraction",
            "s_fraction",
            "context_bias",
            "lr_v_ratio",
            "time_scale",
        )
    }
    horizon = None
    steps = best.get("step")
    if best.get("schedule") is None and isinstance(steps, list) and len(steps) >= 2:
        try:
            span = float(steps[-1]) - float(steps[0])
        except (TypeError, ValueError):
            span = float("nan")
        if math.isfinite(span) and span > 0:
            # The fit's clock: toy time = time_scale * (real step - first step), without a schedule.
            horizon = max(1, round(values["time_scale"] * span))
    return {**values, "n_points": FIT_POINTS, "horizon": horizon, "source": str(path)}


@dataclasses.dataclass(frozen=True)
class AdviceInputs:
    """The advisor's inputs, checked: the mixture as class sizes and the toy configuration that holds it
    (its vocabulary fits the base and every dose)."""

    delta_m: float
    delta_c: float
    cs_fraction: float
    s_fraction: float
    n_points: float
    counts: ClassSizes  # points per class (no augmented points in the base mixture)
    config: Config
    horizon: int
    target: float
    start_mc: float | None
    context_bias: float | None
    lr_v_ratio: float
    time_scale: float | None
    n_grid: int


def check_advice_inputs(
    *,
    delta_m,
    delta_c,
    cs_fraction,
    horizon,
    target,
    s_fraction=0.0,
    n_points=FIT_POINTS,
    start_mc=None,
    context_bias=None,
    lr_v_ratio=0.0,
    time_scale=None,
    n_grid=41,
) -> AdviceInputs:
    """Every rule of :func:`cpi_theory.advise.advise`'s inputs, checked before any simulation (each
    :class:`ConfigError` names the field). Only ``start_mc``'s range depends on the toy's start and is
    checked by the advisor itself, by one evaluation of M_C(0)."""
    cs, s = check_mixture(cs_fraction, s_fraction)
    horizon = check_horizon(horizon)
    target = check_open_unit("target", target)
    n_points = check_positive("n_points", n_points)
    ratio = check_nonnegative("lr_v_ratio", lr_v_ratio)
    if start_mc is not None and context_bias is not None:
        raise ConfigError("start_mc", "give start_mc or context_bias, not both (each sets the start)")
    if start_mc is not None:
        start_mc = check_open_unit("start_mc", start_mc)
    if context_bias is not None:
        context_bias = _number("context_bias", context_bias)
        if abs(context_bias) > BIAS_BOUND:
            raise ConfigError(
                "context_bias", f"must satisfy |context_bias| <= {BIAS_BOUND}, got {context_bias}"
            )
    if time_scale is not None:
        time_scale = check_positive("time_scale", time_scale)
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 2:
        raise ConfigError("n_grid", f"must be an integer >= 2, got {n_grid!r}")
    counts = ClassSizes(n_points * (1.0 - cs - s), n_points * cs, n_points * s, 0.0)
    if counts.context_critical + counts.non_context_critical <= 0:
        raise ConfigError("cs_fraction", "the mixture has no point with a context (C or C+S)")
    # One vocabulary for the base and every dose: the paper's, or what the largest dose needs (augmenting
    # every C+S point needs one more answer per point). Config checks delta_m and delta_c (names them).
    paper = Config()
    config = Config(
        n_answers=max(paper.n_answers, math.ceil(n_points + counts.non_context_critical + 2)),
        n_subjects=max(paper.n_subjects, math.ceil(n_points + 1)),
        n_context_critical=max(counts.context_critical, 0.0),
        n_non_context_critical=counts.non_context_critical,
        n_subject_only=counts.subject_only,
        delta_c=delta_c,
        delta_m=delta_m,
        lr_v=ratio,
        steps=horizon,
    )
    return AdviceInputs(
        delta_m=config.delta_m,
        delta_c=config.delta_c,
        cs_fraction=cs,
        s_fraction=s,
        n_points=n_points,
        counts=counts,
        config=config,
        horizon=horizon,
        target=target,
        start_mc=start_mc,
        context_bias=context_bias,
        lr_v_ratio=ratio,
        time_scale=time_scale,
        n_grid=n_grid,
    )
