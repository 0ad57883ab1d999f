"""Mapping the toy onto a measured context-reliance curve.

1. *Parametrize* the toy from the measured starting state: delta_M (memorized-answer probability without
   context), delta_C (context-copy probability on unknown subjects), the class fractions of the mixture
   (as integer class counts out of ``TOY_POINTS``). The toy needs 0 < 2 delta_C < delta_M < 1: values
   outside are clipped and the clip is recorded, because it means the real model is outside the toy's
   assumptions. The toy fixes the initial attention split at 1/2 : 1/2 (``relation_score``), so its
   starting reliance is M_C(0) = sigmoid((logit delta_C - logit delta_M) / 2), which is below 1/2 whenever
   delta_M > 2 delta_C; a real model may start elsewhere, and the report shows both.
2. *Predict* before any finetuning: run the toy (lr_kq = 1, ``TOY_HORIZON`` steps) and classify its shape.
3. *Fit* the time scale ``alpha`` (real step s <-> toy time lr_kq * t = alpha * s) by least squares on the
   measured curve, interpolating one fine toy run; then, as the toy extensions, also set the initial
   attention split (a tilt of W_KQ(0) towards context, ``context_bias``) so that the toy starts at the
   measured M_C(0), and fit the W_V learning-rate ratio lr_v / lr_kq from ``LR_V_RATIOS``. The curve error
   is the RMSE over the measured points.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize_scalar

from .._precision import requires_float64
from ..config import DataClass, resolve_config
from ..engine import summarize, trajectory_from_records
from ..model import Vocabulary, build_world, context_reliance, pretrained_state, train
from ..simulation import simulate

TOY_POINTS = 20  # C + C+S + S points of the toy mixture (vocabulary: 40 subjects, 50 answers)
TOY_HORIZON = 300  # toy steps at lr_kq = 1 for the a-priori prediction and the fitting grid
LR_V_RATIOS = (0.0, 0.03, 0.1, 0.3)
_EPS = 1e-3


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def toy_start_reliance(delta_m: float, delta_c: float) -> float:
    """The toy's M_C(0) with attention split 1/2 : 1/2 between context and subject."""
    return _sigmoid(0.5 * (_logit(delta_c) - _logit(delta_m)))


def delta_c_for_start(delta_m: float, start_reliance: float) -> float:
    """The delta_C at which the toy starts at ``start_reliance`` (inverse of :func:`toy_start_reliance`)."""
    return _sigmoid(_logit(delta_m) + 2.0 * _logit(start_reliance))


@dataclasses.dataclass(frozen=True)
class ToyParameters:
    delta_m: float
    delta_c: float
    n_context_critical: int
    n_non_context_critical: int
    n_subject_only: int
    lr_v_ratio: float = 0.0
    # Toy extension: log of the initial attention ratio context : subject (0 = the paper's 1/2 : 1/2).
    context_bias: float = 0.0
    notes: tuple[str, ...] = ()

    def overrides(self, steps: int = TOY_HORIZON) -> dict:
        """Overrides for :func:`cpi_theory.simulate` (lr_kq = 1, so toy time = toy step)."""
        return {
            "delta_m": self.delta_m,
            "delta_c": self.delta_c,
            "n_context_critical": self.n_context_critical,
            "n_non_context_critical": self.n_non_context_critical,
            "n_subject_only": self.n_subject_only,
            "lr_kq": 1.0,
            "lr_v": self.lr_v_ratio,
            "steps": steps,
            "record_every": 1,
        }

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out


def summary_record(step, values) -> dict:
    """The report record of a curve's :func:`cpi_theory.engine.summarize` (``inversion``: its shape is
    rise-then-fall; ``peak_step`` a float, as the reports have always written it)."""
    summary = summarize(step, values)
    return {
        "start": summary.start,
        "peak": summary.peak,
        "peak_step": float(summary.peak_step),
        "final": summary.final,
        "shape": summary.shape,
        "inversion": summary.inversion,
    }


def toy_class_counts(
    cs_fraction: float, s_fraction: float, n_points: int = TOY_POINTS
) -> dict[DataClass, int]:
    """Point count per class of a toy mixture with the given fractions (rounded; C takes the rest)."""
    n_cs = int(round(cs_fraction * n_points))
    n_s = int(round(s_fraction * n_points))
    return {
        DataClass.CONTEXT_CRITICAL: n_points - n_cs - n_s,
        DataClass.NON_CONTEXT_CRITICAL: n_cs,
        DataClass.SUBJECT_ONLY: n_s,
    }


def toy_parameters(
    delta_m: float, delta_c: float, cs_fraction: float, s_fraction: float = 0.0, lr_v_ratio: float = 0.0
) -> ToyParameters:
    """Toy parameters from measured strengths and mixture fractions, clipped into the toy's domain."""
    notes = []
    dm = min(max(float(delta_m), 3 * _EPS), 1.0 - _EPS)
    if dm != delta_m:
        notes.append(f"delta_m {delta_m:.4f} clipped to {dm:.4f} (toy needs 0 < delta_M < 1)")
    dc_max = 0.49 * dm
    dc = min(max(float(delta_c), _EPS), dc_max)
    if dc != delta_c:
        notes.append(f"delta_c {delta_c:.4f} clipped to {dc:.4f} (toy needs delta_M > 2 delta_C)")
    counts = toy_class_counts(cs_fraction, s_fraction)
    if all(n < 1 for data_class, n in counts.items() if data_class.has_context):
        raise ValueError("mixture: the toy needs at least one point with context (C or C+S)")
    return ToyParameters(
        delta_m=dm,
        delta_c=dc,
        **{data_class.count_key: n for data_class, n in counts.items()},
        lr_v_ratio=float(lr_v_ratio),
        notes=tuple(notes),
    )


def _toy_start(params: ToyParameters, steps: int):
    """(config, toy_world, state0, tilt) of the toy; ``state0`` has the initial attention split of ``params``.

    The tilt adds ``beta v phi(r)^T`` to W_KQ(0) with v = (theta_C - theta_S) / sqrt(2): every context
    token's score rises by beta / 2 and every subject's falls by beta / 2 (phi . theta = 1/sqrt(2)), so the
    initial attention ratio context : subject is e^beta. Nothing else in the toy changes.
    """
    config = resolve_config(params.overrides(steps))
    toy_world = build_world(config)
    state0 = pretrained_state(toy_world, config.relation_score)
    vocab = Vocabulary(config.n_subjects, config.n_answers)
    v = np.zeros(vocab.dim)
    v[vocab.theta_c], v[vocab.theta_s] = 1.0 / math.sqrt(2.0), -1.0 / math.sqrt(2.0)
    relation_D = np.asarray(toy_world.embeddings[:, toy_world.relation])
    tilt = jnp.asarray(np.outer(v, relation_D), dtype=state0.w_kq.dtype)
    if params.context_bias:
        state0 = dataclasses.replace(state0, w_kq=state0.w_kq + params.context_bias * tilt)
    return config, toy_world, state0, tilt


def simulate_toy(params: ToyParameters, steps: int = TOY_HORIZON) -> tuple[np.ndarray, np.ndarray]:
    """(toy time, M_C) of the toy with these parameters, every step recorded."""
    if not params.context_bias:
        traj = simulate(params.overrides(steps))
    else:
        config, toy_world, state0, _ = _toy_start(params, steps)
        result = train(toy_world, state0, config.lr_kq, config.lr_v, steps=config.steps, record_every=1)
        traj = trajectory_from_records(config, "full", result.records)
    return np.asarray(traj.step, dtype=np.float64), np.asarray(traj.context_reliance, dtype=np.float64)


@requires_float64
def context_bias_for_start(params: ToyParameters, start_reliance: float, bound: float = 30.0) -> float:
    """The initial attention tilt beta at which the toy's M_C(0) equals ``start_reliance`` (bisection).

    M_C(0) increases with beta (more attention on c* raises its logit and lowers a*'s); beta is clipped to
    [-bound, bound] when the target is out of reach.
    """
    _, toy_world, state0, tilt = _toy_start(dataclasses.replace(params, context_bias=0.0), 0)
    start_jit = jax.jit(
        lambda beta: context_reliance(dataclasses.replace(state0, w_kq=state0.w_kq + beta * tilt), toy_world)
    )

    def start_of(beta: float) -> float:
        return float(start_jit(jnp.asarray(beta, dtype=state0.w_kq.dtype)))

    lo, hi = -bound, bound
    if start_reliance <= start_of(lo):
        return lo
    if start_reliance >= start_of(hi):
        return hi
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if start_of(mid) < start_reliance:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_time_scale(steps, values, toy_time, toy_values) -> tuple[float, float]:
    """Least-squares ``alpha`` with values[i] ~ toy(alpha * steps[i]); returns (alpha, RMSE).

    The search is over alpha in [1e-3, toy_time[-1] / steps[-1]] (the toy run must cover the real run): a
    log-spaced grid, then a bounded scalar refinement around the best grid point.
    """
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1 or s.size < 3:
        raise ValueError("trajectory: step and context_reliance must be 1-D of equal length >= 3")
    if np.any(np.diff(s) <= 0):
        raise ValueError("trajectory: step must be strictly increasing")
    s = s - s[0]
    hi = float(toy_time[-1]) / float(s[-1])
    lo = min(1e-3, hi)

    def rmse(alpha: float) -> float:
        return float(np.sqrt(np.mean((np.interp(alpha * s, toy_time, toy_values) - y) ** 2)))

    grid = np.geomspace(lo, hi, 200)
    errors = np.array([rmse(a) for a in grid])
    best = int(np.argmin(errors))
    a_lo, a_hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if a_hi > a_lo:
        res = minimize_scalar(rmse, bounds=(a_lo, a_hi), method="bounded", options={"xatol": 1e-6 * a_hi})
        if res.fun < errors[best]:
            return float(res.x), float(res.fun)
    return float(grid[best]), float(errors[best])


def _fitted_curve(params: ToyParameters, steps, values, horizon: int, toy_curve=None) -> dict:
    toy_time, toy_values = simulate_toy(params, horizon) if toy_curve is None else toy_curve
    alpha, error = fit_time_scale(steps, values, toy_time, toy_values)
    s = np.asarray(steps, dtype=np.float64) - float(steps[0])
    fitted = np.interp(alpha * s, toy_time, toy_values)
    return {
        "parameters": params.to_dict(),
        "time_scale": alpha,
        "curve_error": error,
        "step": [float(x) for x in steps],
        "context_reliance": fitted.tolist(),
        "summary": summary_record(steps, fitted),
    }


def fit_curve(
    steps,
    values,
    params: ToyParameters,
    *,
    extensions: bool = True,
    lr_v_ratios=LR_V_RATIOS,
    horizon: int = TOY_HORIZON,
) -> dict:
    """Predict, then fit the toy to a measured curve (see the module docstring).

    Returns ``prediction`` (the a-priori toy: its trajectory and shape), ``fit`` (time scale only, the
    parameters as measured) and, with ``extensions``, ``extended_fit`` (initial attention split set from
    the measured M_C(0), best lr_v / lr_kq) and ``prediction_calibrated`` (the a-priori toy with that
    split, lr_v = 0), plus ``measured`` (the real curve's summary).
    """
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    toy_time, toy_values = simulate_toy(params, horizon)
    out = {
        "measured": summary_record(steps, values),
        "prediction": {
            "parameters": params.to_dict(),
            "toy_start_reliance": toy_start_reliance(params.delta_m, params.delta_c),
            "step": toy_time.tolist(),
            "context_reliance": toy_values.tolist(),
            "summary": summary_record(toy_time, toy_values),
        },
        "fit": _fitted_curve(params, steps, values, horizon, (toy_time, toy_values)),
    }
    if extensions:
        start = min(max(float(values[0]), _EPS), 1.0 - _EPS)
        calibrated = dataclasses.replace(params, context_bias=context_bias_for_start(params, start))
        split_time, split_values = simulate_toy(calibrated, horizon)
        # The a-priori toy again, but started at the measured M_C(0) through the initial attention split.
        out["prediction_calibrated"] = {
            "parameters": calibrated.to_dict(),
            "step": split_time.tolist(),
            "context_reliance": split_values.tolist(),
            "summary": summary_record(split_time, split_values),
        }
        candidates = [
            _fitted_curve(
                dataclasses.replace(calibrated, lr_v_ratio=float(r)),
                steps,
                values,
                horizon,
                (split_time, split_values) if float(r) == calibrated.lr_v_ratio else None,
            )
            for r in lr_v_ratios
        ]
        out["extended_fit"] = min(candidates, key=lambda c: c["curve_error"])
        out["extended_fit"]["lr_v_ratio_errors"] = {
            str(c["parameters"]["lr_v_ratio"]): c["curve_error"] for c in candidates
        }
    return out
