"""The advisor: where M_C stands at a horizon for a mixture, and the smallest dose of each mitigation that
brings it to a target.

Every number is a run of the exact minimal reduced engine (:func:`cpi_theory.reduced.minimal_train`, the
toy at lr_kq = 1, so a step is a unit of toy time); the limit t -> infinity is the paper module's
late-time law. A mitigation's dose -> M_C(T) map need not be monotone, so the search scans a grid of doses
first and root-finds (``scipy.optimize.brentq``) inside the first grid cell where the target is crossed:
the smallest crossing the grid resolves. The returned dose is then run once more and that value reported.

The mitigations (SPEC.md §7), each at the same total of points unless it removes some, so that the toy's
vocabulary (its unused tokens enter every softmax) is the same for the base and for every dose:

- ``filter_cs``: drop a share of the C+S points (paper §4.3), the others kept;
- ``augment``: replace a share of the C+S points by counterfactual-augmented ones (the same examples with
  a context that contradicts the memorized answer), the total kept;
- ``lr_v_ratio``: train W_V at lr_v = ratio * lr_kq (0: attention-only finetuning);
- ``add_s``: raise the S (closed-book fact) share, the C and C+S points scaled down together.
"""

import dataclasses
import functools
import json
import math

import jax
import numpy as np
from scipy.optimize import brentq

from .._errors import ConfigError
from .._precision import requires_float64
from ..config._config import Config
from ..config._data_class import DataClass
from ..config._params import ClassSizes, ToyParams
from ..engine import recorded_steps, summarize
from ..paper import late_time_law
from ..reduced import Regime, minimal_initial_state, minimal_metrics, minimal_train
from ._inputs import (
    FIT_POINTS,
    check_horizon,
    check_mixture,
    check_nonnegative,
    check_open_unit,
    check_positive,
)

MITIGATIONS = ("filter_cs", "augment", "lr_v_ratio", "add_s")
DOSE_MEANING = {
    "filter_cs": "share of the C+S points dropped (the other points kept)",
    "augment": "share of the C+S points replaced by counterfactual-augmented points (total kept)",
    "lr_v_ratio": "lr_v / lr_kq to finetune with (0: attention-only finetuning)",
    "add_s": "S share of the training points (total kept; C and C+S scaled down together)",
}
N_GRID = 41  # doses scanned per mitigation before the root search (a crossing narrower than a cell is missed)
MAX_LR_V_RATIO = 1.0  # the joint fit's box for lr_v / lr_kq (cpi_theory/bridge/_joint.py)
MAX_S_SHARE = 0.95  # the joint fit's box for the S share: some context points must remain
# A re-simulated dose meets the target when M_C(T) >= target - MET_TOLERANCE: brentq stops within ~1e-15
# of the crossing, on either side of it.
MET_TOLERANCE = 1e-9
# Horizons up to this many steps record every step (one compiled program serves every horizon up to the
# next power of two); longer ones record MAX_RECORDS points (the peak is then located to that resolution).
DENSE_LIMIT = 1 << 16
MAX_RECORDS = 4096
BIAS_BOUND = 40.0  # |context_bias| searched for --start-mc: scores +-20 stay far above the relation's -30
_PAPER = Config()


@dataclasses.dataclass(frozen=True)
class Mitigation:
    """One mitigation's answer. ``status``: "already met" (the base meets the target: dose = base dose),
    "met" (the smallest dose found by root finding), "not reachable" (no dose in ``dose_range`` meets it:
    ``dose`` is None and ``best_dose`` / ``at_horizon`` the best the grid found) or "not applicable"."""

    name: str
    dose_meaning: str
    status: str
    dose: float | None
    base_dose: float
    dose_range: tuple[float, float] | None
    met: bool
    at_horizon: float | None  # M_C(T) re-simulated at ``dose`` (at ``best_dose`` when not reachable)
    checked_by_simulation: bool
    memory_recall: float | None  # memory_recall(T) at that dose
    memory_cost: float | None  # base memory_recall(T) - memory_recall(T) at that dose
    best_dose: float | None
    dose_points: float | None  # points the dose drops / replaces / makes S (None for lr_v_ratio)
    note: str


@dataclasses.dataclass(frozen=True)
class Advice:
    """The advisor's answer (see the module docstring); :meth:`to_json` is the CLI's ``--json``."""

    inputs: dict
    shape: str
    start: float
    peak: float
    peak_step: int
    at_horizon: float
    target: float
    target_met: bool
    limit: dict
    memory: dict
    mitigations: tuple[Mitigation, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return _finite(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def mitigation(self, name: str) -> Mitigation:
        return next(m for m in self.mitigations if m.name == name)


def _finite(x):
    """JSON has no NaN: non-finite numbers become None (tuples become lists)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


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
    grid = np.linspace(lo, hi, n_grid) if hi > lo else np.asarray([lo])
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


# ------------------------------------------------------------------------------------------- the face
def _limit(config: Config, context_bias: float) -> dict:
    law = late_time_law(config, context_bias=context_bias)
    return {
        "value": law.limit,
        "kind": law.limit_kind,
        "closed_form": law.closed_form,
        "exponent": law.exponent,
        "versus_start": law.versus_start,
        "reason": law.reason,
    }


@requires_float64
def advise(
    *,
    delta_m: float,
    delta_c: float,
    cs_fraction: float,
    horizon: int,
    target: float,
    s_fraction: float = 0.0,
    n_points: int | float = FIT_POINTS,
    start_mc: float | None = None,
    context_bias: float | None = None,
    lr_v_ratio: float = 0.0,
    time_scale: float | None = None,
    n_grid: int = N_GRID,
) -> Advice:
    """Where M_C(t) of the toy stands at ``horizon`` toy steps (lr_kq = 1) and, per mitigation, the smallest
    dose that makes M_C(horizon) >= ``target`` (module docstring).

    The mixture: ``n_points`` training points, a share ``cs_fraction`` of them C+S and ``s_fraction`` S,
    the rest C. The start: ``start_mc`` (the base model's M_C(0), converted to the initial attention tilt)
    or ``context_bias`` itself (default 0: the paper's pretrained state). ``time_scale`` (toy steps per real
    step, from a bridge fit) only adds the horizon in real steps to the inputs.
    """
    cs, s = check_mixture(cs_fraction, s_fraction)
    horizon = check_horizon(horizon)
    target = check_open_unit("target", target)
    n_points = check_positive("n_points", n_points)
    ratio = check_nonnegative("lr_v_ratio", lr_v_ratio)
    if start_mc is not None and context_bias is not None:
        raise ConfigError("start_mc", "give start_mc or context_bias, not both (each sets the start)")
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 2:
        raise ConfigError("n_grid", f"must be an integer >= 2, got {n_grid!r}")
    counts = ClassSizes(n_points * (1.0 - cs - s), n_points * cs, n_points * s, 0.0)
    if counts.context_critical + counts.non_context_critical <= 0:
        raise ConfigError("cs_fraction", "the mixture has no point with a context (C or C+S)")
    # One vocabulary for the base and every dose: the paper's, or what the largest dose needs (augmenting
    # every C+S point needs one more answer per point).
    n_subjects = max(_PAPER.n_subjects, math.ceil(n_points + 1))
    n_answers = max(_PAPER.n_answers, math.ceil(n_points + counts.non_context_critical + 2))
    config = Config(
        n_answers=n_answers,
        n_subjects=n_subjects,
        n_context_critical=max(counts.context_critical, 0.0),
        n_non_context_critical=counts.non_context_critical,
        n_subject_only=counts.subject_only,
        delta_c=delta_c,
        delta_m=delta_m,
        lr_v=ratio,
        steps=horizon,
    )
    base = ToyParams.from_config(config)
    regime = Regime(value_trained=ratio != 0, has_s=counts.subject_only > 0, has_aug=False)
    if start_mc is not None:
        start_mc = check_open_unit("start_mc", start_mc)
        beta = _bias_for_start(base, regime, start_mc)
    else:
        beta = 0.0 if context_bias is None else float(context_bias)
        if not math.isfinite(beta) or abs(beta) > BIAS_BOUND:
            raise ConfigError(
                "context_bias", f"must be finite with |context_bias| <= {BIAS_BOUND}, got {beta}"
            )
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
        _search(name, base, regime, horizon, target, s, n_points, base_recall, n_grid) for name in MITIGATIONS
    )
    inputs = {
        "delta_m": float(delta_m),
        "delta_c": float(delta_c),
        "cs_fraction": cs,
        "s_fraction": s,
        "n_points": n_points,
        "class_sizes": {
            dc.label: counts.of(dc) for dc in DataClass if dc is not DataClass.COUNTERFACTUAL_AUGMENTED
        },
        "vocabulary": {"subjects": n_subjects, "answers": n_answers},
        "horizon": horizon,
        "target": target,
        "start_mc": float(mc[0]),
        "context_bias": beta,
        "lr_v_ratio": ratio,
    }
    if time_scale is not None:
        time_scale = check_positive("time_scale", time_scale)
        inputs["time_scale"] = time_scale
        inputs["horizon_real_steps"] = horizon / time_scale
    return Advice(
        inputs=inputs,
        shape=str(summary.shape),
        start=float(summary.start),
        peak=float(summary.peak),
        peak_step=int(summary.peak_step),
        at_horizon=at_horizon,
        target=target,
        target_met=at_horizon >= target,
        limit=_limit(config, beta),
        memory=memory,
        mitigations=mitigations,
        notes=tuple(notes),
    )
