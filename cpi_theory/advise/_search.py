"""The advisor's computation: the exact runs, the start, and the dose search of each mitigation (see
:func:`cpi_theory.advise.advise`). Imported only once the inputs have passed their checks: it loads JAX.

Every number is a run of the exact minimal reduced engine (:func:`cpi_theory.reduced.minimal_train`, the
toy at lr_kq = 1, so a step is a unit of toy time); the limit t -> infinity is the paper module's
late-time law. A mitigation's dose -> M_C(T) map need not be monotone, so the search scans a grid of doses
first and root-finds (``scipy.optimize.brentq``) inside the first grid cell where the target is crossed:
the smallest crossing the grid resolves. The returned dose is then run once more and that value reported.
"""

import functools
import math

import jax
import numpy as np
from scipy.optimize import brentq

from .._errors import ConfigError
from ..config._data_class import DataClass
from ..config._params import ToyParams
from ..engine import recorded_steps, summarize
from ..paper import late_time_law
from ..reduced import Regime, minimal_initial_state, minimal_metrics, minimal_train
from ._inputs import BIAS_BOUND, AdviceInputs
from ._result import DOSE_MEANING, MITIGATIONS, Advice, Mitigation

MAX_LR_V_RATIO = 1.0  # the joint fit's box for lr_v / lr_kq (cpi_theory/fit/_joint.py)
MAX_S_SHARE = 0.95  # the joint fit's box for the S share: some context points must remain
# lr_v / lr_kq doses beyond MAX_LR_V_RATIO (when the base's ratio is larger) are spaced geometrically, this
# many per decade: a linear grid up to a ratio of 1e6 would leave [0, 25000] as its first cell.
LR_V_DOSES_PER_DECADE = 4
# A re-simulated dose meets the target when M_C(T) >= target - MET_TOLERANCE: brentq stops within ~1e-15
# of the crossing, on either side of it.
MET_TOLERANCE = 1e-9
# Horizons up to this many steps record every step (one compiled program serves every horizon up to the
# next power of two); longer ones record MAX_RECORDS points (the peak is then located to that resolution).
DENSE_LIMIT = 1 << 16
MAX_RECORDS = 4096


# ------------------------------------------------------------------------------------------ the runs
def _as_params(values: ToyParams) -> ToyParams:
    # np.float64 scalars, not Python floats: strongly typed, so every dose hits the same compiled program.
    return values.map(np.float64)


def _run(values: ToyParams, regime: Regime, horizon: int):
    """(recorded steps, M_C curve, memory recall at the horizon or None) of one exact run."""
    params = _as_params(values)
    if horizon <= DENSE_LIMIT:
        out = minimal_train(params, steps=horizon, regime=regime, compile_per_steps=False)
        steps = np.arange(horizon + 1)
    else:
        every = -(-horizon // MAX_RECORDS)
        out = minimal_train(params, steps=horizon, record_every=every, regime=regime)
        steps = np.asarray(recorded_steps(horizon, every))
    mc = np.asarray(out.records["context_reliance"], dtype=np.float64)
    recall = out.records.get("memory_recall")
    recall = None if recall is None else float(np.asarray(recall)[-1])
    return steps, mc, recall


@functools.cache
def _start_fn(regime: Regime):
    def start(params):
        return minimal_metrics(minimal_initial_state(params, regime), params, regime)["context_reliance"]

    return jax.jit(start)


def _bias_for_start(values: ToyParams, regime: Regime, start_mc: float) -> float:
    """The initial attention tilt (``context_bias``) at which the exact toy's M_C(0) is ``start_mc``:
    M_C(0) rises with it (more attention on c* lifts its logit and lowers a*'s)."""
    start = _start_fn(regime)

    def gap(beta):
        return float(start(_as_params(values.replace(context_bias=beta)))) - start_mc

    low, high = gap(-BIAS_BOUND) + start_mc, gap(BIAS_BOUND) + start_mc
    if not low < start_mc < high:
        raise ConfigError(
            "start_mc",
            f"must lie in ({low:.6g}, {high:.6g}) for delta_m / delta_c as given (M_C(0) from all attention "
            f"on the subject to all on the context), got {start_mc}",
        )
    return float(brentq(gap, -BIAS_BOUND, BIAS_BOUND, xtol=1e-13, rtol=4 * np.finfo(float).eps))


# ------------------------------------------------------------------------------------- the mitigations
def _dosed(name: str, base: ToyParams, dose: float, s0: float, n_points: float) -> ToyParams:
    sizes = base.class_sizes
    if name == "filter_cs":
        return base.with_class_sizes(non_context_critical=sizes.non_context_critical * (1.0 - dose))
    if name == "augment":
        return base.with_class_sizes(
            non_context_critical=sizes.non_context_critical * (1.0 - dose),
            counterfactual_augmented=sizes.counterfactual_augmented + sizes.non_context_critical * dose,
        )
    if name == "lr_v_ratio":
        return base.replace(lr_v=dose * base.lr_kq)
    scale = (1.0 - dose) / (1.0 - s0)  # add_s
    return base.with_class_sizes(
        context_critical=sizes.context_critical * scale,
        non_context_critical=sizes.non_context_critical * scale,
        subject_only=n_points * dose,
    )


def _regime(name: str, base: Regime) -> Regime:
    return Regime(
        value_trained=base.value_trained or name == "lr_v_ratio",
        has_s=base.has_s or name == "add_s",
        has_aug=base.has_aug or name == "augment",
    )


def _fractional(values: ToyParams) -> list[str]:
    return [
        f"n_{data_class.symbol} = {values.class_sizes.of(data_class):.3g}"
        for data_class in DataClass
        if 0.0 < values.class_sizes.of(data_class) < 1.0
    ]


def _points(name: str, base: ToyParams, dose: float, n_points: float) -> float | None:
    if name in ("filter_cs", "augment"):
        return base.class_sizes.non_context_critical * dose
    return n_points * dose if name == "add_s" else None


def dose_grid(name: str, low: float, high: float, n_grid: int) -> np.ndarray:
    """The doses scanned before the root search: ``n_grid`` evenly spaced in [low, high]; for lr_v_ratio
    with a base ratio above :data:`MAX_LR_V_RATIO`, ``n_grid`` evenly spaced in [0, MAX_LR_V_RATIO] and
    then :data:`LR_V_DOSES_PER_DECADE` per decade up to ``high`` (so the resolution near the ratios that
    matter does not depend on how large the base ratio is)."""
    if high <= low:
        return np.asarray([low])
    if name == "lr_v_ratio" and high > MAX_LR_V_RATIO:
        decades = math.log10(high / MAX_LR_V_RATIO)
        above = np.geomspace(MAX_LR_V_RATIO, high, max(2, math.ceil(decades * LR_V_DOSES_PER_DECADE) + 1))
        return np.concatenate([np.linspace(low, MAX_LR_V_RATIO, n_grid), above[1:]])
    return np.linspace(low, high, n_grid)


def _search(name, base, regime, horizon, target, s0, n_points, base_recall, n_grid) -> Mitigation:
    meaning = DOSE_MEANING[name]
    sizes = base.class_sizes
    if name in ("filter_cs", "augment") and sizes.non_context_critical == 0:
        return Mitigation(name, meaning, "not applicable", None, 0.0, None, False, None, False, None, None,
                          None, None, "no C+S points to act on")  # fmt: skip
    if name == "filter_cs":
        # Dropping every C+S point of a set made only of them would leave no data.
        rest = sizes.context_critical + sizes.subject_only + sizes.counterfactual_augmented
        base_dose, dose_range = 0.0, (0.0, 1.0 if rest > 0 else 0.999)
    elif name == "augment":
        base_dose, dose_range = 0.0, (0.0, 1.0)
    elif name == "lr_v_ratio":
        base_dose = base.lr_v / base.lr_kq
        dose_range = (0.0, max(MAX_LR_V_RATIO, base_dose))
    else:
        base_dose, dose_range = s0, (s0, max(MAX_S_SHARE, s0))
    regime = _regime(name, regime)

    @functools.cache
    def at(dose: float):
        _, mc, recall = _run(_dosed(name, base, dose, s0, n_points), regime, horizon)
        value = float(mc[-1])
        return (value if math.isfinite(value) else -math.inf), recall

    lo, hi = dose_range
    grid = dose_grid(name, lo, hi, n_grid)
    values = np.asarray([at(float(d))[0] for d in grid])
    meets = values >= target
    notes = []
    if meets[0] and grid[0] == base_dose:
        status, dose = "already met", float(grid[0])
    elif meets.any():
        i = int(np.argmax(meets))
        status = "met"
        if i == 0:  # lr_v_ratio below the base's own ratio: the range starts at 0
            dose = float(grid[0])
        else:
            dose = float(
                brentq(lambda d: at(d)[0] - target, float(grid[i - 1]), float(grid[i]), xtol=1e-13,
                       rtol=4 * np.finfo(float).eps)
            )  # fmt: skip
        if dose < base_dose:
            notes.append(f"below the base's own value {base_dose:.6g}")
    else:
        status, dose = "not reachable", None
    probe_dose = dose if dose is not None else float(grid[int(np.argmax(values))])
    at.cache_clear()  # the check below is one more simulation, not a cached value
    checked, recall = at(probe_dose)
    met = dose is not None and checked >= target - MET_TOLERANCE
    if status == "not reachable":
        notes.append(f"best on the {grid.size}-dose grid: M_C(T) = {checked:.6g} at dose {probe_dose:.6g}")
    fractional = _fractional(_dosed(name, base, probe_dose, s0, n_points))
    if fractional:
        notes.append(
            "class sizes below one point (" + ", ".join(fractional) + "): the toy's analytic continuation"
        )
    cost = None if recall is None or base_recall is None else base_recall - recall
    return Mitigation(
        name=name,
        dose_meaning=meaning,
        status=status,
        dose=dose,
        base_dose=float(base_dose),
        dose_range=(float(lo), float(hi)),
        met=bool(met),
        at_horizon=float(checked) if math.isfinite(checked) else None,
        checked_by_simulation=True,
        memory_recall=recall,
        memory_cost=cost,
        best_dose=None if dose is not None else probe_dose,
        dose_points=_points(name, base, probe_dose, n_points),
        note="; ".join(notes),
    )


# ----------------------------------------------------------------------------------------- the whole
def _limit(config, context_bias: float) -> dict:
    law = late_time_law(config, context_bias=context_bias)
    return {
        "value": law.limit,
        "kind": law.limit_kind,
        "closed_form": law.closed_form,
        "exponent": law.exponent,
        "versus_start": law.versus_start,
        "reason": law.reason,
    }


def compute_advice(given: AdviceInputs) -> Advice:
    """The advice for inputs already checked by :func:`cpi_theory.advise._inputs.check_advice_inputs`."""
    config, counts, horizon = given.config, given.counts, given.horizon
    base = ToyParams.from_config(config)
    regime = Regime(value_trained=given.lr_v_ratio != 0, has_s=counts.subject_only > 0, has_aug=False)
    if given.start_mc is not None:
        beta = _bias_for_start(base, regime, given.start_mc)
    else:
        beta = 0.0 if given.context_bias is None else float(given.context_bias)
    base = base.replace(context_bias=beta)

    steps, mc, base_recall = _run(base, regime, horizon)
    summary = summarize(steps, mc)
    at_horizon = float(mc[-1])
    notes = []
    if horizon > DENSE_LIMIT:
        notes.append(f"M_C recorded every {int(steps[1] - steps[0])} steps: the peak is located to that step")
    memory = {
        "measure": "memory_recall" if base_recall is not None else "unavailable",
        "base_at_horizon": base_recall,
        "meaning": (
            "closed-book p(a* | [s*, r]) of a held-out memorized fact; memory_cost = base value - value at "
            "the dose (> 0: the dose loses memory)"
        ),
    }
    mitigations = tuple(
        _search(name, base, regime, horizon, given.target, given.s_fraction, given.n_points, base_recall,
                given.n_grid)
        for name in MITIGATIONS
    )  # fmt: skip
    inputs = {
        "delta_m": given.delta_m,
        "delta_c": given.delta_c,
        "cs_fraction": given.cs_fraction,
        "s_fraction": given.s_fraction,
        "n_points": given.n_points,
        "class_sizes": {
            dc.label: counts.of(dc) for dc in DataClass if dc is not DataClass.COUNTERFACTUAL_AUGMENTED
        },
        "vocabulary": {"subjects": config.n_subjects, "answers": config.n_answers},
        "horizon": horizon,
        "target": given.target,
        "start_mc": float(mc[0]),
        "context_bias": beta,
        "lr_v_ratio": given.lr_v_ratio,
    }
    if given.time_scale is not None:
        inputs["time_scale"] = given.time_scale
        inputs["horizon_real_steps"] = horizon / given.time_scale
    return Advice(
        inputs=inputs,
        shape=str(summary.shape),
        start=float(summary.start),
        peak=float(summary.peak),
        peak_step=int(summary.peak_step),
        at_horizon=at_horizon,
        target=given.target,
        target_met=at_horizon >= given.target,
        limit=_limit(config, beta),
        memory=memory,
        mitigations=mitigations,
        notes=tuple(notes),
    )
