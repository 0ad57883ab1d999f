"""Forecast a context-reliance curve from its first checkpoints: the toy's posterior predictive, the late-time
limit, the baselines and their stacking weights (the report's contract: ``cpi-theory forecast --help``)."""

import math
import time

import numpy as np

from .._precision import requires_float64
from ..config import Config
from ..fit import TOY_POINTS, smooth_baseline
from ..fit._joint import noise_estimate
from ..paper import late_time_law
from ._model import PRIOR_TEXT, Problem, make_problem, natural_parameters, toy_curves
from ._sampler import SMCSettings, smc_posteriors

SCHEMA = "cpi_theory.forecast/1"
MIN_FIT_POINTS = 5  # points at or before --until
HORIZON_FACTOR = 20  # --horizon at most s0 + 20 (until - s0): the toy runs that far at the largest time scale
MAX_GRID = 400  # forecast steps beyond the measured ones
DENSE_POINTS = 241  # the toy on [s0, horizon] for the peak
STACK_ORIGINS = (0.6, 0.8)  # internal origins (shares of the fitted points) for the stacking weights
STACK_GRID = 20  # the stacking weights' simplex in steps of 1/20
LAW_DRAWS = 200  # posterior draws whose late-time law is evaluated
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}
MEMBERS = ("toy", "persistence", "smooth")


# ----------------------------------------------------------------------------------------- helpers
def _finite(value):
    """JSON-safe: NaN and infinities become None, NumPy scalars plain floats."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def forecast_steps(fit_steps, later_steps, horizon: float) -> np.ndarray:
    """Every measured step after the origin up to ``horizon``, then an even grid to the horizon whose
    spacing is at most the fitted part's median spacing (at most :data:`MAX_GRID` steps)."""
    origin = float(fit_steps[-1])
    gap = float(np.median(np.diff(fit_steps)))
    measured = [float(s) for s in later_steps if origin < s <= horizon]
    start = measured[-1] if measured else origin
    if horizon > start:
        count = int(math.ceil((horizon - start) / gap))
        grid = np.linspace(start, horizon, min(count, MAX_GRID) + 1)[1:]
    else:
        grid = np.zeros(0)
    return np.asarray(measured + [float(s) for s in grid])


def predictive(posterior, future_steps, rng, extra_steps=()) -> dict:
    """Posterior predictive paths at ``future_steps`` (after the fitted part): the toy of each draw plus
    the residual process carried on from the last fitted residual; ``latent`` the toy alone, ``fitted`` the
    toy at the fitted steps, ``extra`` the toy at ``extra_steps`` (any steps)."""
    problem = posterior.problem
    x = posterior.x
    future = np.asarray(future_steps, dtype=np.float64)
    extra = np.asarray(extra_steps, dtype=np.float64)
    s0, n, m = problem.steps[0], problem.steps.size, future.size
    tau_future = problem.tau[-1] + (future - problem.steps[-1])
    curves = toy_curves(problem, x, np.concatenate([problem.tau, tau_future, extra - s0]))
    fitted, latent = curves[:, :n], curves[:, n : n + m]
    p = len(problem.family.free)
    sigma, rho = np.exp(x[:, p]), x[:, p + 1]
    residual = problem.values[-1] - fitted[:, -1]
    paths = np.empty_like(latent)
    previous = problem.steps[-1]
    for k, step in enumerate(future):
        r = rho ** ((step - previous) / problem.gap)
        residual = r * residual + sigma * np.sqrt(np.clip(1.0 - r**2, 0.0, None)) * rng.standard_normal(
            r.size
        )
        paths[:, k] = latent[:, k] + residual
        previous = step
    return {
        "paths": np.clip(paths, 0.0, 1.0),
        "latent": latent,
        "fitted": fitted,
        "extra": curves[:, n + m :],
    }


def _quantiles(draws) -> dict:
    return {k: np.quantile(draws, q, axis=0) for k, q in QUANTILES.items()}


def _simplex(members: int, steps: int = STACK_GRID) -> np.ndarray:
    grid = [(i, j, steps - i - j) for i in range(steps + 1) for j in range(steps + 1 - i)]  # members == 3
    if members != 3:
        raise ValueError("stacking: three members")
    return np.asarray(grid, dtype=np.float64) / steps


def stacking_weights(predictions: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Weights on the simplex (a grid of step 1/20) minimizing the squared error of the weighted
    predictions (``(members, points)``); ties go to the larger toy weight, then to persistence."""
    grid = _simplex(predictions.shape[0])
    sse = np.sum((grid @ predictions - observed[None, :]) ** 2, axis=1)
    best = np.flatnonzero(sse <= sse.min() * (1 + 1e-12) + 1e-300)
    return grid[best[np.lexsort((-grid[best, 1], -grid[best, 0]))[0]]]


def _late_time(problem: Problem, x, origin_value: float, rng) -> dict:
    draws = x if x.shape[0] <= LAW_DRAWS else x[rng.choice(x.shape[0], LAW_DRAWS, replace=False)]
    natural = natural_parameters(problem, draws)
    limits, kinds, below_start = [], [], []
    for i in range(draws.shape[0]):
        config = Config(
            n_context_critical=TOY_POINTS * float(natural["c_fraction"][i]),
            n_non_context_critical=TOY_POINTS * float(natural["cs_fraction"][i]),
            n_subject_only=TOY_POINTS * float(natural["s_fraction"][i]),
            delta_m=float(natural["delta_m"][i]),
            delta_c=float(natural["delta_c"][i]),
        )
        with np.errstate(all="ignore"):  # a class of ~0 points: its log term is -inf, the limit still exact
            law = late_time_law(config, context_bias=float(natural["context_bias"][i]))
        limits.append(law.limit if law.limit is not None and math.isfinite(law.limit) else np.nan)
        kinds.append(law.limit_kind)
        below_start.append(law.versus_start == "below start")
    limits = np.asarray(limits, dtype=np.float64)
    finite = limits[np.isfinite(limits)]
    return {
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "q05": float(np.quantile(finite, 0.05)) if finite.size else float("nan"),
        "q95": float(np.quantile(finite, 0.95)) if finite.size else float("nan"),
        "kind_probability": {
            k: float(np.mean([q == k for q in kinds])) for k in ("memory", "context", "plateau")
        },
        "p_below_start": float(np.mean(below_start)),
        "p_below_origin_value": float(np.mean(finite < origin_value)) if finite.size else float("nan"),
        "draws": int(finite.size),
        "note": "the toy's limit (W_V frozen, relation's attention neglected); the residual process has mean 0 "
        "there",
    }


def _misspecification(problem: Problem, fitted_draws) -> dict:
    curve = np.median(fitted_draws, axis=0)
    residual = problem.values - curve
    rmse = float(np.sqrt(np.mean(residual**2)))
    lag1 = (
        float(np.corrcoef(residual[:-1], residual[1:])[0, 1])
        if residual.size >= 4 and np.std(residual[:-1]) > 0 and np.std(residual[1:]) > 0
        else float("nan")
    )
    noise = noise_estimate(problem.values)
    ratio = rmse / max(noise, 1e-4)
    misspecified = bool(ratio > 2.0 and (not math.isfinite(lag1) or lag1 > 0.3))
    if misspecified:
        statement = (
            f"the toy misses the fitted part systematically: residual RMSE {rmse:.4f} is {ratio:.1f}x the "
            f"curve's own point-to-point noise ({noise:.4f}) and the residuals are correlated (lag-1 "
            f"{lag1:.2f}); the forecast leans on the residual process, and its bands carry that misfit"
        )
    else:
        statement = f"residuals look like noise: RMSE {rmse:.4f} against point-to-point noise {noise:.4f}" + (
            f", lag-1 correlation {lag1:.2f}" if math.isfinite(lag1) else ""
        )
    return {
        "residual_rmse": rmse,
        "residual_lag1": lag1,
        "noise_sd": noise,
        "misspecified": misspecified,
        "statement": statement,
    }


def _stacking(internal, fit_steps, fit_values, n_free: int, rng) -> dict:
    """Weights of (toy median, persistence, smooth) from forecasts made at internal origins of the fitted
    part and scored on the fitted points after each."""
    if not internal:
        return {
            "weights": {"toy": 1.0, "persistence": 0.0, "smooth": 0.0},
            "internal_origins": [],
            "rmse": None,
            "n_points": 0,
            "note": "too few fitted points for internal origins: the toy alone",
        }
    rows, observed, origins = [], [], []
    for posterior in internal:
        k = posterior.problem.steps.size
        future = fit_steps[k:]
        toy = np.median(predictive(posterior, future, rng)["paths"], axis=0)
        persistence = np.full(future.size, fit_values[k - 1])
        smooth = smooth_baseline(fit_steps[:k], fit_values[:k], n_free, future)
        rows.append(np.stack([toy, persistence, smooth]))
        observed.append(fit_values[k:])
        origins.append(float(fit_steps[k - 1]))
    predictions = np.concatenate(rows, axis=1)
    observed = np.concatenate(observed)
    weights = stacking_weights(predictions, observed)
    return {
        "weights": dict(zip(MEMBERS, (float(w) for w in weights), strict=True)),
        "internal_origins": origins,
        "rmse": {m: _rmse(predictions[i], observed) for i, m in enumerate(MEMBERS)},
        "n_points": int(observed.size),
        "note": "forecasts from the internal origins (each with its own posterior) scored on the fitted points "
        "after them; weights on the simplex, step 1/20",
    }


def _summary(values) -> dict:
    return {
        "median": float(np.median(values)),
        "q05": float(np.quantile(values, 0.05)),
        "q95": float(np.quantile(values, 0.95)),
    }


# -------------------------------------------------------------------------------------------- entry
def check_forecast_inputs(steps, until: float, horizon: float | None) -> tuple[np.ndarray, float]:
    """(the fitted mask, the horizon) or a ``ValueError`` naming the option (see ``forecast``)."""
    s = np.asarray(steps, dtype=np.float64)
    fit = s <= until
    if until > s[-1]:
        raise ValueError(f"--until: {until:g} is past the data (last step {s[-1]:g})")
    if fit.sum() < MIN_FIT_POINTS:
        raise ValueError(
            f"--until: need at least {MIN_FIT_POINTS} points at or before it, got {int(fit.sum())}"
        )
    origin = float(s[fit][-1])
    if horizon is None:
        if not (~fit).any():
            raise ValueError("--horizon: required when --until is the last measured step (nothing after it)")
        horizon = float(s[-1])
    limit = s[0] + HORIZON_FACTOR * (origin - s[0])
    if not origin < horizon <= limit:
        raise ValueError(
            f"--horizon: must lie after the origin {origin:g} and at most {HORIZON_FACTOR}x the fitted span "
            f"from the first step ({limit:g}), got {horizon:g}"
        )
    return fit, float(horizon)


@requires_float64
def forecast(
    steps,
    values,
    *,
    until: float,
    horizon: float | None = None,
    below: float | None = None,
    settings: SMCSettings | None = None,
    noise: str = "ou",
    seed: int = 0,
    source: str | None = None,
) -> dict:
    """Forecast the curve after ``until`` (the report's contract: ``cpi-theory forecast --help``,
    :data:`cpi_theory.cli._manual.FORECAST_FIELDS`): the points at or before
    ``until`` are fitted, the toy's posterior sampled (``settings``; ``noise``: "ou" or "white", the
    residual model), and the posterior predictive, the late-time limit, the peak, the baselines and their
    stacking weights computed up to ``horizon`` (default: the last measured step)."""
    started = time.perf_counter()
    settings = SMCSettings() if settings is None else settings
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    fit, horizon = check_forecast_inputs(s, until, horizon)
    fs, fy = s[fit], y[fit]
    rng = np.random.default_rng(seed)
    main = make_problem(fs, fy, fs - fs[0], noise=noise)
    internal_sizes = sorted(
        {max(MIN_FIT_POINTS, int(round(share * fs.size))) for share in STACK_ORIGINS} - {fs.size}
    )
    internal_sizes = [k for k in internal_sizes if k < fs.size]
    internal = [
        make_problem(fs[:k], fy[:k], fs[:k] - fs[0], npad=main.structure.npad, noise=noise)
        for k in internal_sizes
    ]
    sampled = time.perf_counter()
    posteriors = smc_posteriors([main, *internal], [settings.replicas] + [1] * len(internal), settings, seed)
    sampled = time.perf_counter() - sampled
    posterior = posteriors[0]
    # The forecast steps, and the toy on a dense grid over [s0, horizon] for the peak.
    later = s[~fit]
    steps_out = forecast_steps(fs, later, horizon)
    dense = np.linspace(fs[0], horizon, DENSE_POINTS)
    pred = predictive(posterior, steps_out, rng, extra_steps=dense)
    bands = _quantiles(pred["paths"])
    toy_median = np.median(pred["latent"], axis=0)
    peak_steps = dense[np.argmax(pred["extra"], axis=1)]
    # Baselines and stacking.
    n_free = len(main.family.free_names)
    persistence = np.full(steps_out.size, fy[-1])
    smooth = smooth_baseline(fs, fy, n_free, steps_out, seed=seed)
    stacking = _stacking(posteriors[1:], fs, fy, n_free, rng)
    w = stacking["weights"]
    stacked = w["toy"] * bands["median"] + w["persistence"] * persistence + w["smooth"] * smooth
    # Held-out scoring where the curve was measured after the origin.
    observed = np.full(steps_out.size, np.nan)
    index = {float(v): i for i, v in enumerate(s)}
    for k, step in enumerate(steps_out):
        if float(step) in index and step > fs[-1]:
            observed[k] = y[index[float(step)]]
    measured = np.isfinite(observed)
    holdout = None
    if measured.any():
        o = observed[measured]
        rmse = {
            "toy": _rmse(bands["median"][measured], o),
            "persistence": _rmse(persistence[measured], o),
            "smooth": _rmse(smooth[measured], o),
            "stacked": _rmse(stacked[measured], o),
        }
        holdout = {
            "n_points": int(measured.sum()),
            "rmse": rmse,
            "coverage50": float(np.mean((bands["q25"][measured] <= o) & (o <= bands["q75"][measured]))),
            "coverage90": float(np.mean((bands["q05"][measured] <= o) & (o <= bands["q95"][measured]))),
            "winner": min(rmse, key=rmse.get),
        }
    below_value = float(y[0] if below is None else below)
    natural = natural_parameters(main, posterior.x)
    fitted_bands = _quantiles(pred["fitted"])
    report = {
        "schema": SCHEMA,
        "source": source,
        "until": float(fs[-1]),
        "horizon": horizon,
        "data": {"step": s.tolist(), "context_reliance": y.tolist(), "fitted": fit.tolist()},
        "forecast": {
            "step": steps_out.tolist(),
            "observed": observed.tolist(),
            **{k: v.tolist() for k, v in bands.items()},
            "toy": toy_median.tolist(),
            "persistence": persistence.tolist(),
            "smooth": smooth.tolist(),
            "stacked": stacked.tolist(),
        },
        "fitted": {
            "step": fs.tolist(),
            "median": fitted_bands["median"].tolist(),
            "q05": fitted_bands["q05"].tolist(),
            "q95": fitted_bands["q95"].tolist(),
        },
        "late_time_limit": _late_time(main, posterior.x, float(fy[-1]), rng),
        "peak": {
            "p_already_peaked": float(np.mean(peak_steps <= fs[-1])),
            "step_median": float(np.median(peak_steps)),
            "step_q05": float(np.quantile(peak_steps, 0.05)),
            "step_q95": float(np.quantile(peak_steps, 0.95)),
        },
        "below": {
            "value": below_value,
            "p_ever": float(np.mean(np.any(pred["paths"] < below_value, axis=1))),
            "p_at_horizon": float(np.mean(pred["paths"][:, -1] < below_value)),
        },
        "posterior": {
            **posterior.diagnostics(),
            "parameters": {name: _summary(v) for name, v in natural.items()},
            "priors": PRIOR_TEXT,
            "noise_model": noise,
            "sampling_seconds": sampled,
        },
        "stacking": stacking,
        "misspecification": _misspecification(main, pred["fitted"]),
        "holdout": holdout,
    }
    report["seconds"] = time.perf_counter() - started
    return _finite(report)
