"""Joint fit of the toy family to a measured context-reliance curve, with intervals and held-out checks.

The free parameters (the *internal* coordinates, each in a box that keeps the toy in its domain):

- ``delta_m`` in [0.05, 0.98]; ``delta_c_ratio`` r in [0.02, 0.98] with delta_C = r delta_M / 2, so
  0 < 2 delta_C < delta_M < 1 always holds;
- ``context_fraction`` f (share of the ``TOY_POINTS`` points that carry a context, C + C+S; S = 1 - f) and
  ``cs_share`` q (the C+S share among them): C = f (1 - q), C+S = f q, S = 1 - f, as real class sizes;
- ``context_bias`` beta in [-8, 8] (the initial attention tilt: context : subject = e^beta at t = 0);
- ``lr_v_ratio`` lr_v / lr_kq in [0, 1] (fixed at 0 unless asked for: its regime compiles slowly);
- ``log_time_scale`` log alpha: real step s <-> toy time alpha * tau(s), tau(s) = the real run's summed
  learning-rate factors from its first recorded step (= s - s0 without a schedule, so a schedule of the
  real run is a change of clock: both toy learning rates scale with it).

What the user knows (delta_M, delta_C, the C+S and S fractions, lr_v / lr_kq) is fixed instead. The toy
(:func:`cpi_theory.reduced.minimal_train`, lr_kq = 1, ``horizon`` steps) is interpolated at the toy times
of the measured steps; residuals and their Jacobian (``jax.jacfwd``) are compiled once per set of free
parameters and fed to ``scipy.optimize.least_squares`` from several starts.

Uncertainty (Laplace): cov = s^2 (J^T J)^+ with s^2 = SSR / (n - p) in the internal coordinates; 95%
intervals use Student's t with n - p degrees of freedom, are clipped to the parameter boxes, and are
mapped to the reported parameters (monotone maps by their end points, delta_C and the C / C+S fractions by
the delta method). Pairs with |corr| > 0.95 and near-null directions of the scaled J^T J are reported as
what the curve does not determine.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares
from scipy.stats import t as student_t

from .._precision import requires_float64
from ..config import Config, ToyParams
from ..reduced import Regime, minimal_train, reduced_params
from ._fit import TOY_POINTS, summary_record

JOINT_HORIZON = 400  # toy steps at lr_kq = 1
NAMES = (
    "delta_m",
    "delta_c_ratio",
    "context_fraction",
    "cs_share",
    "context_bias",
    "lr_v_ratio",
    "log_time_scale",
)
BOUNDS = {
    "delta_m": (0.05, 0.98),
    "delta_c_ratio": (0.02, 0.98),
    "context_fraction": (0.05, 1.0),
    "cs_share": (0.0, 1.0),
    "context_bias": (-8.0, 8.0),
    "lr_v_ratio": (0.0, 1.0),
}
TIME_SCALE_RANGE = 1e4  # log alpha spans [log(alpha_max / 1e4), log alpha_max]
CORRELATION_LIMIT = 0.95
_MIN_PAD = 64


# ---------------------------------------------------------------------------------------------- clock
def schedule_time(
    steps, *, warmup: float = 0.0, decay: str = "none", total: float | None = None
) -> np.ndarray:
    """tau(s): the summed learning-rate factor of the real run up to each step (linear warmup over
    ``warmup`` steps, then ``decay`` "none" | "linear" | "cosine" to 0 at ``total``); tau(s) = s without
    a schedule."""
    s = np.asarray(steps, dtype=np.float64)
    if warmup <= 0 and decay == "none":
        return s.copy()
    if decay not in ("none", "linear", "cosine"):
        raise ValueError(f'decay: must be "none", "linear" or "cosine", got {decay!r}')
    if decay != "none" and (total is None or total <= warmup):
        raise ValueError("schedule: a decay needs total > warmup steps")
    grid = np.linspace(0.0, float(s.max()), max(2001, int(s.max()) + 1))

    def rate(x):
        r = np.ones_like(x)
        if warmup > 0:
            r = np.where(x < warmup, (x + 1.0) / warmup, r)  # the first step already has lr / warmup
        if decay != "none":
            u = np.clip((x - warmup) / (total - warmup), 0.0, 1.0)
            d = 1.0 - u if decay == "linear" else 0.5 * (1.0 + np.cos(np.pi * u))
            r = np.where(x >= warmup, d, r)
        return r

    rates = rate(grid)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (rates[1:] + rates[:-1]) * np.diff(grid))])
    return np.interp(s, grid, cumulative)


# ----------------------------------------------------------------------------------- parameter maps
def _base_params() -> ToyParams:
    return reduced_params(Config())


def _natural(full, fixed_dc: bool, fixed_cs: bool):
    """Toy parameters (delta_m, delta_c, n_C, n_CS, n_S, beta, lr_v, log alpha) of an internal vector.

    ``fixed_dc``: slot 1 holds delta_C itself; ``fixed_cs``: slot 3 holds the C+S fraction itself."""
    dm, slot1, f, slot3, beta, lrv, log_alpha = (full[i] for i in range(7))
    dc = slot1 if fixed_dc else slot1 * dm / 2
    cs = slot3 if fixed_cs else f * slot3
    return dm, dc, f - cs, cs, 1.0 - f, beta, lrv, log_alpha


@functools.cache
def _compiled(free: tuple, fixed_dc: bool, fixed_cs: bool, regime: Regime, horizon: int, npad: int):
    """(residual, jacobian) jitted for one structure: ``(theta, rest, tau, y, w) -> (npad,)``."""
    base = _base_params()
    free_index = np.asarray(free, dtype=np.int64)
    rest_index = np.asarray([i for i in range(7) if i not in free], dtype=np.int64)
    toy_time = jnp.arange(horizon + 1, dtype=jnp.float64)

    def full_vector(theta, rest):
        full = jnp.zeros(7, dtype=jnp.float64)
        full = full.at[free_index].set(theta)
        return full.at[rest_index].set(rest)

    def curve(theta, rest, tau):
        dm, dc, n_c, n_cs, n_s, beta, lrv, log_alpha = _natural(full_vector(theta, rest), fixed_dc, fixed_cs)
        params = base.replace(
            class_sizes=base.class_sizes.replace(
                context_critical=TOY_POINTS * n_c,
                non_context_critical=TOY_POINTS * n_cs,
                subject_only=TOY_POINTS * n_s,
            ),
            delta_m=dm,
            delta_c=dc,
            context_bias=beta,
            lr_v=lrv,
        )
        mc = minimal_train(params, steps=horizon, regime=regime, metrics="context_reliance")
        return jnp.interp(jnp.exp(log_alpha) * tau, toy_time, mc.records["context_reliance"])

    def residual(theta, rest, tau, y, w):
        return w * (curve(theta, rest, tau) - y)

    return jax.jit(residual), jax.jit(jax.jacfwd(residual))


def _pad(n: int) -> int:
    return max(_MIN_PAD, 1 << (int(n) - 1).bit_length())


# ------------------------------------------------------------------------------------------ the model
class ToyFamily:
    """The toy family with some parameters fixed; ``curve(theta, tau)`` and its Jacobian."""

    def __init__(
        self,
        span: float,
        *,
        delta_m=None,
        delta_c=None,
        cs_fraction=None,
        s_fraction=None,
        lr_v_ratio=0.0,
        horizon: int = JOINT_HORIZON,
    ):
        self.horizon = int(horizon)
        self.notes = []
        fixed = {}
        bounds = dict(BOUNDS)
        alpha_max = self.horizon / max(float(span), 1e-12)
        bounds["log_time_scale"] = (math.log(alpha_max / TIME_SCALE_RANGE), math.log(alpha_max))
        if delta_m is not None:
            fixed["delta_m"] = float(delta_m)
        if delta_c is not None:
            dc = float(delta_c)
            if delta_m is not None and not 2 * dc < float(delta_m):
                clipped = 0.49 * float(delta_m)
                self.notes.append(
                    f"delta_c {dc:.4f} clipped to {clipped:.4f} (toy needs delta_M > 2 delta_C)"
                )
                dc = clipped
            fixed["delta_c_ratio"] = dc
            if delta_m is None:
                lo, hi = bounds["delta_m"]
                bounds["delta_m"] = (max(lo, 2 * dc / 0.98), hi)
        if s_fraction is not None:
            fixed["context_fraction"] = 1.0 - float(s_fraction)
        if cs_fraction is not None:
            cs = float(cs_fraction)
            if s_fraction is not None:
                ctx = 1.0 - float(s_fraction)
                fixed["cs_share"] = cs / ctx if ctx > 0 else 0.0
            else:
                fixed["cs_share"] = cs  # slot 3 holds the C+S fraction itself
                lo, hi = bounds["context_fraction"]
                bounds["context_fraction"] = (max(lo, cs), hi)
        if lr_v_ratio is not None:
            fixed["lr_v_ratio"] = float(lr_v_ratio)
        self.fixed_dc = delta_c is not None
        self.fixed_cs = cs_fraction is not None and s_fraction is None
        self.fixed = fixed
        self.free = tuple(i for i, name in enumerate(NAMES) if name not in fixed)
        self.free_names = tuple(NAMES[i] for i in self.free)
        self.rest = np.asarray([fixed[NAMES[i]] for i in range(7) if i not in self.free], dtype=np.float64)
        self.lower = np.asarray([bounds[n][0] for n in self.free_names])
        self.upper = np.asarray([bounds[n][1] for n in self.free_names])
        self.bounds = bounds
        s_free = "context_fraction" in self.free_names
        self.regime = Regime(
            value_trained="lr_v_ratio" in self.free_names or fixed.get("lr_v_ratio", 0.0) != 0.0,
            has_s=s_free or fixed.get("context_fraction", 1.0) < 1.0,
            has_aug=False,
        )

    def _fns(self, npad: int):
        return _compiled(self.free, self.fixed_dc, self.fixed_cs, self.regime, self.horizon, npad)

    def residual(self, theta, tau, y, w):
        """Residuals and Jacobian at (padded) data."""
        res, _ = self._fns(tau.size)
        return np.asarray(res(jnp.asarray(theta), jnp.asarray(self.rest), tau, y, w))

    def jacobian(self, theta, tau, y, w):
        _, jac = self._fns(tau.size)
        return np.asarray(jac(jnp.asarray(theta), jnp.asarray(self.rest), tau, y, w))

    def full(self, theta) -> np.ndarray:
        full = np.zeros(7)
        full[list(self.free)] = theta
        full[[i for i in range(7) if i not in self.free]] = self.rest
        return full

    def natural(self, theta) -> dict:
        dm, dc, n_c, n_cs, n_s, beta, lrv, log_alpha = _natural(
            jnp.asarray(self.full(theta)), self.fixed_dc, self.fixed_cs
        )
        return {
            "delta_m": float(dm),
            "delta_c": float(dc),
            "c_fraction": float(n_c),
            "cs_fraction": float(n_cs),
            "s_fraction": float(n_s),
            "context_bias": float(beta),
            "lr_v_ratio": float(lrv),
            "time_scale": float(np.exp(log_alpha)),
        }

    def natural_jacobian(self, theta) -> tuple[list[str], np.ndarray]:
        def vec(th):
            full = jnp.zeros(7).at[np.asarray(self.free)].set(th)
            full = full.at[np.asarray([i for i in range(7) if i not in self.free], dtype=np.int64)].set(
                jnp.asarray(self.rest)
            )
            dm, dc, n_c, n_cs, n_s, beta, lrv, log_alpha = _natural(full, self.fixed_dc, self.fixed_cs)
            return jnp.stack([dm, dc, n_c, n_cs, n_s, beta, lrv, jnp.exp(log_alpha)])

        names = [
            "delta_m",
            "delta_c",
            "c_fraction",
            "cs_fraction",
            "s_fraction",
            "context_bias",
            "lr_v_ratio",
            "time_scale",
        ]
        return names, np.asarray(jax.jacfwd(vec)(jnp.asarray(theta, dtype=jnp.float64)))


def _padded(tau, y, npad):
    n = tau.size
    pad = npad - n
    w = np.concatenate([np.ones(n), np.zeros(pad)])
    return (
        jnp.asarray(np.concatenate([tau, np.full(pad, tau[-1] if n else 0.0)])),
        jnp.asarray(np.concatenate([y, np.zeros(pad)])),
        jnp.asarray(w),
    )


# ------------------------------------------------------------------------------------------- fitting
def _start_points(family: ToyFamily, rng, n_starts: int) -> list[np.ndarray]:
    """Random starts inside the boxes (log time scale placed later by a grid)."""
    centre = {
        "delta_m": 0.6,
        "delta_c_ratio": 0.5,
        "context_fraction": 0.9,
        "cs_share": 0.4,
        "context_bias": 1.0,
        "lr_v_ratio": 0.0,
        "log_time_scale": 0.0,
    }
    starts = [np.asarray([centre[n] for n in family.free_names])]
    for _ in range(n_starts - 1):
        starts.append(rng.uniform(family.lower, family.upper))
    for x in starts:
        x[:] = np.clip(x, family.lower, family.upper)
    return starts


def _place(family: ToyFamily, theta, tau, y, w, n: int):
    """Set context_bias so the toy starts near y[0] and the time scale by a log grid (cheap forward runs)."""
    theta = np.array(theta, dtype=np.float64)
    names = family.free_names
    if "context_bias" in names:
        k = names.index("context_bias")
        lo, hi = family.bounds["context_bias"]
        t0 = jnp.zeros_like(tau)
        for _ in range(30):
            theta[k] = 0.5 * (lo + hi)
            start = family.residual(theta, t0, jnp.zeros_like(y), w)[0]
            lo, hi = (theta[k], hi) if start < float(y[0]) else (lo, theta[k])
    if "log_time_scale" in names:
        k = names.index("log_time_scale")
        lo, hi = family.bounds["log_time_scale"]
        best = None
        for value in np.linspace(lo, hi, 24):
            theta[k] = value
            sse = float(np.sum(family.residual(theta, tau, y, w)[:n] ** 2))
            if best is None or sse < best[0]:
                best = (sse, value)
        theta[k] = best[1]
    return np.clip(theta, family.lower, family.upper)


PEAK_NAMES = ("delta_m", "delta_c_ratio", "context_fraction", "cs_share")
PEAK_SEEDS = (  # PEAK_NAMES of the rise-then-fall starts
    (0.85, 0.5, 0.85, 0.3),
    (0.85, 0.5, 0.85, 0.5),
    (0.75, 0.4, 0.75, 0.65),
)


def _peak_starts(family: ToyFamily, tau, y, w, n: int, tau_fit, y_fit) -> list[np.ndarray]:
    """Starts seeded for a rise-then-fall: a large delta_M, a C+S share of 0.3 to 0.65, the context bias
    placed at the first point and the time scale that puts the toy's peak at the measured (smoothed)
    maximum. None when the curve's maximum is at an end or no seeded toy peaks inside its run."""
    names = family.free_names
    if "log_time_scale" not in names or tau_fit.size < 5:
        return []
    smooth = np.convolve(y_fit, np.ones(3) / 3.0, mode="same")
    smooth[0], smooth[-1] = y_fit[0], y_fit[-1]
    peak = int(np.argmax(smooth))
    if peak in (0, tau_fit.size - 1) or tau_fit[peak] <= 0:
        return []
    toy_time = np.arange(family.horizon + 1, dtype=np.float64)
    tt, y0, w0 = _padded(toy_time, np.zeros_like(toy_time), _pad(toy_time.size))
    k = names.index("log_time_scale")
    lo, hi = family.bounds["log_time_scale"]
    starts = []
    for seed in PEAK_SEEDS:
        values = dict(zip(PEAK_NAMES, seed, strict=True))
        theta = np.asarray([values.get(m, 0.0) for m in names], dtype=np.float64)
        theta = np.clip(theta, family.lower, family.upper)
        # the context bias at the first point, at time scale 1 (toy time = tau): _place without its time grid
        theta[k] = 0.0
        if "context_bias" in names:
            j = names.index("context_bias")
            b_lo, b_hi = family.bounds["context_bias"]
            for _ in range(30):
                theta[j] = 0.5 * (b_lo + b_hi)
                start = family.residual(theta, jnp.zeros_like(tau), jnp.zeros_like(y), w)[0]
                b_lo, b_hi = (theta[j], b_hi) if start < float(y[0]) else (b_lo, theta[j])
        toy = family.residual(theta, tt, y0, w0)[: toy_time.size]
        t_peak = int(np.argmax(toy))
        if t_peak in (0, family.horizon):
            continue
        theta[k] = float(np.clip(math.log(t_peak / tau_fit[peak]), lo, hi))
        starts.append(np.clip(theta, family.lower, family.upper))
    return starts


def _laplace(family: ToyFamily, theta, jac, ssr: float, n: int) -> dict:
    """Intervals (internal and reported parameters), correlations and what the curve does not determine."""
    p = theta.size
    dof = n - p
    names = family.free_names
    out = {"dof": dof, "internal": {}, "correlations": {}, "undetermined": []}
    if dof <= 0:
        out["undetermined"].append(f"{n} points for {p} free parameters: no interval can be estimated")
        return out | {"cov": None}
    s2 = ssr / dof
    jtj = jac.T @ jac
    cov = s2 * np.linalg.pinv(jtj, rcond=1e-12)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    q = float(student_t.ppf(0.975, dof))
    for i, name in enumerate(names):
        lo, hi = family.bounds[name]
        out["internal"][name] = {
            "value": float(theta[i]),
            "sd": float(sd[i]),
            "low": float(max(theta[i] - q * sd[i], lo)),
            "high": float(min(theta[i] + q * sd[i], hi)),
        }
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    for i in range(p):
        for j in range(i + 1, p):
            c = float(corr[i, j]) if np.isfinite(corr[i, j]) else float("nan")
            out["correlations"][f"{names[i]}:{names[j]}"] = c
            if abs(c) > CORRELATION_LIMIT:
                out["undetermined"].append(
                    f"{names[i]} and {names[j]} trade off (corr {c:+.3f}): the curve fixes a combination, not each"
                )
    # Near-null directions of the scaled J^T J (unit diagonal): combinations the curve barely constrains.
    scale = np.sqrt(np.clip(np.diag(jtj), 1e-300, None))
    eigval, eigvec = np.linalg.eigh(jtj / np.outer(scale, scale))
    for value, vec in zip(eigval, eigvec.T, strict=True):
        if value < 1e-4 * max(eigval.max(), 1e-300):
            top = np.argsort(-np.abs(vec))[:3]
            combo = " ".join(f"{vec[k]:+.2f} {names[k]}" for k in top)
            out["undetermined"].append(f"near-singular direction (eigenvalue {value:.1e}): {combo}")
    for name in names:
        lo, hi = family.bounds[name]
        entry = out["internal"][name]
        if entry["high"] - entry["low"] >= 0.9 * (hi - lo):
            out["undetermined"].append(
                f"{name}: its 95% interval spans almost its whole range [{lo:g}, {hi:g}]"
            )
    out["cov"] = cov
    out["t_quantile"] = q
    return out


def _reported_parameters(family: ToyFamily, theta, laplace: dict) -> dict:
    values = family.natural(theta)
    names, g = family.natural_jacobian(theta)
    cov = laplace.get("cov")
    single = {  # reported parameter -> (internal name, monotone map)
        "delta_m": ("delta_m", lambda x: x),
        "context_bias": ("context_bias", lambda x: x),
        "lr_v_ratio": ("lr_v_ratio", lambda x: x),
        "time_scale": ("log_time_scale", math.exp),
        "s_fraction": ("context_fraction", lambda x: 1.0 - x),
    }
    domain = {"delta_c": (0.0, 0.5), "c_fraction": (0.0, 1.0), "cs_fraction": (0.0, 1.0)}
    out = {}
    for k, name in enumerate(names):
        entry = {"value": values[name], "fixed": not np.any(np.abs(g[k]) > 0), "low": None, "high": None}
        if cov is not None and not entry["fixed"]:
            internal = single.get(name)
            if internal is not None and internal[0] in laplace["internal"]:
                ends = sorted(internal[1](laplace["internal"][internal[0]][e]) for e in ("low", "high"))
                entry["low"], entry["high"] = float(ends[0]), float(ends[1])
            else:
                sd = float(np.sqrt(max(g[k] @ cov @ g[k], 0.0)))
                lo, hi = domain.get(name, (-np.inf, np.inf))
                q = laplace["t_quantile"]
                entry["low"] = float(max(values[name] - q * sd, lo))
                entry["high"] = float(min(values[name] + q * sd, hi))
        out[name] = entry
    return out


def _toy_band(family: ToyFamily, theta, tau_dense, cov, q):
    y0 = np.zeros_like(tau_dense)
    tau_p, y_p, w_p = _padded(tau_dense, y0, _pad(tau_dense.size))
    n = tau_dense.size
    curve = family.residual(theta, tau_p, y_p, w_p)[:n]
    if cov is None:
        return curve, None
    jac = family.jacobian(theta, tau_p, y_p, w_p)[:n]
    sd = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", jac, cov, jac), 0.0, None))
    return curve, q * sd


# --------------------------------------------------------------------------------------- baselines
def smooth_baseline(steps, values, n_params: int, predict_at, seed: int = 0) -> np.ndarray:
    """Least-squares c + sum_i a_i exp(-b_i x) (+ d x when ``n_params`` is even), x = the step scaled to
    the fit window, with ``n_params`` free parameters; predicted at ``predict_at``."""
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    s0, span = s[0], max(s[-1] - s[0], 1e-12)
    m = max((n_params - 1) // 2, 0)
    linear = n_params >= 2 and (n_params - 1) % 2 == 1

    def model(p, x):
        out = np.full_like(x, p[0])
        for i in range(m):
            out = out + p[1 + 2 * i] * np.exp(-p[2 + 2 * i] * x)
        if linear:
            out = out + p[-1] * x
        return out

    x = (s - s0) / span
    n_p = 1 + 2 * m + int(linear)
    lower = [-np.inf] + [-np.inf, 0.0] * m + ([-np.inf] if linear else [])
    upper = [np.inf] + [np.inf, 200.0] * m + ([np.inf] if linear else [])
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(8):
        p0 = [y[-1]]
        for _ in range(m):
            p0 += [rng.normal(0.0, 0.3), float(np.exp(rng.uniform(np.log(0.3), np.log(50.0))))]
        if linear:
            p0 += [0.0]
        res = least_squares(lambda p: model(p, x) - y, np.asarray(p0[:n_p]), bounds=(lower, upper))
        if best is None or res.cost < best.cost:
            best = res
    xp = (np.asarray(predict_at, dtype=np.float64) - s0) / span
    return model(best.x, xp)


def noise_estimate(values) -> float:
    """The noise sd of a curve from its second differences (exact for a straight line plus white noise)."""
    y = np.asarray(values, dtype=np.float64)
    if y.size < 3:
        return 0.0
    return float(np.sqrt(np.mean(np.diff(y, 2) ** 2) / 6.0))


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def multistart_least_squares(family: ToyFamily, tau, y, w, n: int, rng, n_starts: int = 8):
    """The family's least-squares fit to the first ``n`` of the padded points ``tau, y, w`` from several
    starts: ``(theta, ssr, starts used)``.

    A second round of starts when the best fit misses by clearly more than the curve's own noise (a local
    minimum: in the recovery study, every wrong shape class came with such an RMSE, rise-then-fall truths
    fitted as falls): starts seeded for a rise-then-fall peaking where the curve does (_peak_starts), then
    fresh random starts.
    """
    tau_fit, y_fit = np.asarray(tau)[:n], np.asarray(y)[:n]
    target = max(1.5 * noise_estimate(y_fit), 0.01)
    best, starts_used = None, 0
    for round_ in range(3):
        if round_ == 0:
            starts = [_place(family, x, tau, y, w, n) for x in _start_points(family, rng, n_starts)]
        elif math.sqrt(2.0 * best.cost / n) <= target:
            break
        elif round_ == 1:
            starts = _peak_starts(family, tau, y, w, n, tau_fit, y_fit)
        else:
            starts = [_place(family, x, tau, y, w, n) for x in _start_points(family, rng, n_starts)[1:]]
        for x0 in starts:
            res = least_squares(
                lambda th: family.residual(th, tau, y, w),
                x0,
                jac=lambda th: family.jacobian(th, tau, y, w),
                bounds=(family.lower, family.upper),
                x_scale="jac",
                max_nfev=200,
            )
            starts_used += 1
            if best is None or res.cost < best.cost:
                best = res
    return np.asarray(best.x), 2.0 * float(best.cost), starts_used


# --------------------------------------------------------------------------------------------- entry
@requires_float64
def joint_fit(
    steps,
    values,
    *,
    delta_m=None,
    delta_c=None,
    cs_fraction=None,
    s_fraction=None,
    lr_v_ratio=0.0,
    fit_until=None,
    schedule: dict | None = None,
    n_starts: int = 8,
    seed: int = 0,
    horizon: int = JOINT_HORIZON,
    n_dense: int = 120,
) -> dict:
    """Fit the toy family jointly to a measured curve (module docstring); ``lr_v_ratio=None`` fits it.

    Returns ``best_fit`` {``parameters`` (value, low, high, fixed), ``curve_error`` (RMSE on the fitted
    points), ``summary`` (of the fitted toy at the measured steps), ``step``/``context_reliance`` (the toy
    at every measured step), ``dense`` (a fine curve with its 95% band), ``uncertainty``}, and ``holdout``
    (when ``fit_until`` leaves points after it): RMSEs of the toy, persistence and the smooth baseline.
    """
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    tau_all = schedule_time(s, **(schedule or {}))
    tau_all = tau_all - tau_all[0]
    fit_mask = np.ones(s.size, dtype=bool) if fit_until is None else s <= float(fit_until)
    n = int(fit_mask.sum())
    if n < 3:
        raise ValueError(f"fit_until: need at least 3 points at or before it, got {n}")
    if fit_until is not None and n == s.size:
        raise ValueError("fit_until: no point after it to hold out")
    family = ToyFamily(
        max(tau_all[fit_mask][-1], 1e-12),
        delta_m=delta_m,
        delta_c=delta_c,
        cs_fraction=cs_fraction,
        s_fraction=s_fraction,
        lr_v_ratio=lr_v_ratio,
        horizon=horizon,
    )
    npad = _pad(max(s.size, n_dense))
    tau, yy, w = _padded(tau_all[fit_mask], y[fit_mask], npad)
    rng = np.random.default_rng(seed)
    theta, ssr, starts_used = multistart_least_squares(family, tau, yy, w, n, rng, n_starts)
    jac = family.jacobian(theta, tau, yy, w)[:n]
    laplace = _laplace(family, theta, jac, ssr, n)
    parameters = _reported_parameters(family, theta, laplace)
    # The toy at every measured step (fitted and held-out) and on a dense grid with its band.
    tau_p, y_p, w_p = _padded(tau_all, np.zeros_like(tau_all), npad)
    fitted_all = family.residual(theta, tau_p, y_p, w_p)[: s.size]
    s_dense = np.linspace(s[0], s[-1], n_dense)
    tau_dense = np.interp(s_dense, s, tau_all)
    curve_dense, band = _toy_band(family, theta, tau_dense, laplace.get("cov"), laplace.get("t_quantile"))
    fit_steps = s[fit_mask]
    best_fit = {
        "parameters": parameters,
        "free": list(family.free_names),
        "curve_error": _rmse(fitted_all[fit_mask], y[fit_mask]),
        "n_points": n,
        "summary": summary_record(s, fitted_all),
        "step": s.tolist(),
        "context_reliance": fitted_all.tolist(),
        "dense": {
            "step": s_dense.tolist(),
            "context_reliance": curve_dense.tolist(),
            "band_low": None if band is None else (curve_dense - band).tolist(),
            "band_high": None if band is None else (curve_dense + band).tolist(),
        },
        "uncertainty": {
            "internal": laplace["internal"],
            "correlations": laplace["correlations"],
            "undetermined": laplace["undetermined"],
            "dof": laplace["dof"],
        },
        "notes": family.notes
        + (["lr_v_ratio fixed (fit it with lr_v_ratio=None / --fit-lr-v)"] if lr_v_ratio is not None else []),
        "horizon": horizon,
        "starts": starts_used,
        "fit_until": None if fit_until is None else float(fit_until),
        "schedule": schedule,
    }
    out = {"best_fit": best_fit, "holdout": None}
    if fit_until is not None:
        held = ~fit_mask
        smooth = smooth_baseline(fit_steps, y[fit_mask], len(family.free_names), s[held], seed=seed)
        errors = {
            "curve_error": _rmse(fitted_all[held], y[held]),
            "persistence_error": _rmse(np.full(held.sum(), y[fit_mask][-1]), y[held]),
            "smooth_error": _rmse(smooth, y[held]),
        }
        winner = min(errors, key=errors.get)
        out["holdout"] = {
            **errors,
            "n_points": int(held.sum()),
            "winner": {"curve_error": "toy", "persistence_error": "persistence", "smooth_error": "smooth"}[
                winner
            ],
            "smooth_parameters": len(family.free_names),
            "step": s[held].tolist(),
            "smooth": smooth.tolist(),
            "persistence": float(y[fit_mask][-1]),
        }
    return out


def joint_report_fields(measured_summary: dict, joint: dict) -> dict:
    """Report keys of the joint fit: ``best_fit``, ``holdout``, ``inversion_toy_fitted`` (the joint fit's)."""
    return {
        "best_fit": joint["best_fit"],
        "holdout": joint["holdout"],
        "inversion_real": measured_summary["inversion"],
        "inversion_toy_fitted": joint["best_fit"]["summary"]["inversion"],
    }


# ------------------------------------------------------------------------------- parameter recovery
RECOVERY_BOX = {  # where the recovery study draws its true parameters (inside BOUNDS)
    "delta_m": (0.5, 0.9),
    "delta_c_ratio": (0.2, 0.8),
    "context_fraction": (0.6, 1.0),
    "cs_share": (0.2, 0.8),
    "context_bias": (-1.0, 2.0),
}


@requires_float64
def recovery_study(
    n_curves: int, *, seed: int = 0, noise=(0.01, 0.02), n_points: int = 30, n_starts: int = 4
) -> list[dict]:
    """Curves made by the toy with random known parameters plus Gaussian noise (sd drawn from ``noise``),
    fitted by :func:`joint_fit` with everything but lr_v free; one row per curve: whether each true internal
    parameter lies in its 95% interval, and the shape of the fit vs the noise-free truth."""
    rng = np.random.default_rng(seed)
    steps = np.linspace(0.0, 300.0, n_points)
    rows = []
    for index in range(n_curves):
        family = ToyFamily(steps[-1])
        truth = {name: float(rng.uniform(*RECOVERY_BOX[name])) for name in RECOVERY_BOX}
        truth["log_time_scale"] = float(np.log(rng.uniform(60.0, 300.0) / steps[-1]))  # toy time 60 to 300
        theta = np.asarray([truth[n] for n in family.free_names])
        tau, y0, w = _padded(steps, np.zeros_like(steps), _pad(n_points))
        clean = family.residual(theta, tau, y0, w)[:n_points]
        sd = float(rng.uniform(*noise))
        noisy = clean + rng.normal(0.0, sd, n_points)
        out = joint_fit(steps, noisy, n_starts=n_starts, seed=seed + index)["best_fit"]
        internal = out["uncertainty"]["internal"]
        covered = {
            name: bool(internal[name]["low"] <= truth[name] <= internal[name]["high"])
            if name in internal
            else None
            for name in family.free_names
        }
        true_shape = summary_record(steps, clean)["shape"]
        rows.append(
            {
                "curve": index,
                "noise_sd": sd,
                "truth": truth,
                "fitted": {name: internal[name]["value"] for name in internal},
                "covered": covered,
                "all_covered": all(v for v in covered.values() if v is not None),
                "true_shape": true_shape,
                "fitted_shape": out["summary"]["shape"],
                "shape_right": out["summary"]["shape"] == true_shape,
                "curve_error": out["curve_error"],
            }
        )
    return rows


def recovery_coverage(rows: list[dict]) -> dict:
    """Per-parameter and overall coverage of the recovery rows, and the shape agreement."""
    pairs = [v for r in rows for v in r["covered"].values() if v is not None]
    names = sorted({n for r in rows for n in r["covered"]})
    return {
        "curves": len(rows),
        "parameter_coverage": float(np.mean(pairs)) if pairs else float("nan"),
        "per_parameter": {n: float(np.mean([r["covered"][n] for r in rows])) for n in names},
        "all_covered": float(np.mean([r["all_covered"] for r in rows])),
        "shape_right": float(np.mean([r["shape_right"] for r in rows])),
    }
