"""The forecast's probabilistic model: the toy family of the joint fit plus a residual process, with priors.

Curve. ``f(s) = M_C^toy(alpha * tau(s))``: the toy family of :func:`cpi_theory.fit.joint_fit` (its
*internal* coordinates, :data:`cpi_theory.fit._joint.NAMES`; lr_v / lr_kq fixed at 0, attention-only
finetuning, so the late-time law applies), run by the differentiable minimal engine for ``JOINT_HORIZON``
toy steps over the fitted part, longer for the forecast.

Priors (independent, each *uniform on its box*; the boxes are the joint fit's):

    delta_m            U(0.05, 0.98)        memorization strength delta_M
    delta_c_ratio      U(0.02, 0.98)        r in delta_C = r delta_M / 2 (so 2 delta_C < delta_M always)
    context_fraction   U(0.05, 1)           share of the points with a context (C + C+S); S = 1 - it
    cs_share           U(0, 1)              C+S share among the context points
    context_bias       U(-8, 8)             initial attention tilt: context : subject = e^beta at t = 0
    log_time_scale     U(log(a_max / 1e4), log a_max), a_max = 400 / tau(until): the fitted part spans
                       at most the toy's first 400 steps; a log-uniform time scale over four decades
    log_sigma          U(log 1e-4, log 0.5) the residual's stationary sd sigma (log-uniform)
    rho                U(0, 0.99)           the residual's correlation over one median step gap

Noise. The residual ``e(s) = y(s) - f(s)`` is an Ornstein-Uhlenbeck process in the step: stationary sd
``sigma``, correlation ``rho ** (|s - s'| / gap)`` (``gap``: the median spacing of the fitted steps). At
``rho -> 0`` it is white measurement noise; near 1 it is a slowly varying misfit, which is what a
misspecified toy leaves, and the forecast then carries the last residual forward, decaying. Likelihood:
the exact Markov factorization, ``e_1 ~ N(0, sigma^2)``, ``e_i | e_(i-1) ~ N(r_i e_(i-1), sigma^2 (1 -
r_i^2))``, ``r_i = rho ** ((s_i - s_(i-1)) / gap)``.

Sampling runs in unconstrained coordinates ``z`` (each box mapped by a logistic function); the uniform
prior becomes ``sum log sigmoid(z) + log sigmoid(-z)``.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..fit._joint import JOINT_HORIZON, NAMES, ToyFamily, _compiled, _pad

NOISE_NAMES = ("log_sigma", "rho")
NOISE_BOUNDS = {"log_sigma": (math.log(1e-4), math.log(0.5)), "rho": (0.0, 0.99)}
NOISE_MODELS = {"white": 1e-9, "ou": 0.99}  # noise model -> the upper end of rho's box (white: rho = 0)
PRIOR_TEXT = (
    "independent uniform priors on the joint fit's boxes: delta_m U(0.05, 0.98), delta_c_ratio U(0.02, "
    "0.98) (delta_C = r delta_M / 2), context_fraction U(0.05, 1), cs_share U(0, 1), context_bias U(-8, 8), "
    "log time scale U(log(a_max / 1e4), log a_max) with a_max = 400 / tau(until); residual: an "
    "Ornstein-Uhlenbeck process in the step, log sigma U(log 1e-4, log 0.5), rho (correlation over one "
    "median step gap) U(0, 0.99); lr_v / lr_kq fixed at 0"
)
_CURVE_PAD = 512
_BAD = -1e12  # log-likelihood of a toy that is not finite (never accepted, weight 0)


@dataclasses.dataclass(frozen=True)
class Structure:
    """What one compiled sampler serves: the free coordinates, the toy's regime and the padded length."""

    free: tuple
    fixed_dc: bool
    fixed_cs: bool
    regime: object
    npad: int

    @property
    def dim(self) -> int:
        return len(self.free) + len(NOISE_NAMES)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One curve up to one origin, ready to sample: its arrays (padded to ``structure.npad``)."""

    family: ToyFamily
    structure: Structure
    steps: np.ndarray  # the fitted steps
    values: np.ndarray
    tau: np.ndarray  # the fitted clock from the first step
    gap: float  # the median step spacing of the fitted part (the residual's correlation unit)
    noise: str = "ou"  # "ou" (Ornstein-Uhlenbeck residual) or "white" (rho fixed at 0)

    @property
    def names(self) -> tuple:
        return self.family.free_names + NOISE_NAMES

    @property
    def lower(self) -> np.ndarray:
        return np.concatenate([self.family.lower, [NOISE_BOUNDS[n][0] for n in NOISE_NAMES]])

    @property
    def upper(self) -> np.ndarray:
        noise = {**{n: NOISE_BOUNDS[n][1] for n in NOISE_NAMES}, "rho": NOISE_MODELS[self.noise]}
        return np.concatenate([self.family.upper, [noise[n] for n in NOISE_NAMES]])

    def data(self) -> dict:
        """The arrays the log density reads (a pytree: stack them to sample many problems at once)."""
        n, npad = self.steps.size, self.structure.npad
        pad = npad - n
        gaps = np.concatenate([[0.0], np.diff(self.steps) / self.gap])
        return {
            "tau": jnp.asarray(np.concatenate([self.tau, np.full(pad, self.tau[-1])])),
            "y": jnp.asarray(np.concatenate([self.values, np.zeros(pad)])),
            "mask": jnp.asarray(np.concatenate([np.ones(n), np.zeros(pad)])),
            "gap": jnp.asarray(np.concatenate([gaps, np.zeros(pad)])),
            "lower": jnp.asarray(self.lower),
            "upper": jnp.asarray(self.upper),
            "rest": jnp.asarray(self.family.rest),
        }

    def to_x(self, z) -> np.ndarray:
        """Constrained coordinates (the names above) of unconstrained ``z`` (``(..., dim)``)."""
        z = np.asarray(z, dtype=np.float64)
        return self.lower + (self.upper - self.lower) / (1.0 + np.exp(-z))

    def to_z(self, x, margin: float = 1e-3) -> np.ndarray:
        u = np.clip((np.asarray(x) - self.lower) / (self.upper - self.lower), margin, 1 - margin)
        return np.log(u / (1 - u))


def make_problem(steps, values, tau, *, npad: int | None = None, noise: str = "ou", **fixed) -> Problem:
    """The problem of a fitted part (``steps``, ``values``, its clock ``tau`` from the first step);
    ``fixed``: what :class:`ToyFamily` may hold fixed (delta_m, delta_c, cs_fraction, s_fraction)."""
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    t = np.asarray(tau, dtype=np.float64)
    family = ToyFamily(max(float(t[-1]), 1e-12), lr_v_ratio=0.0, **fixed)
    npad = _pad(s.size) if npad is None else int(npad)
    if npad < s.size:
        raise ValueError(f"npad: {npad} < {s.size} points")
    structure = Structure(family.free, family.fixed_dc, family.fixed_cs, family.regime, npad)
    gap = float(np.median(np.diff(s))) if s.size > 1 else 1.0
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise: must be one of {', '.join(NOISE_MODELS)}, got {noise!r}")
    return Problem(family, structure, s, y, t, gap, noise)


# ------------------------------------------------------------------------------------- log density
def log_prior(z):
    """The uniform box priors in unconstrained coordinates (up to a constant)."""
    return jnp.sum(jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))


@functools.cache
def log_likelihood_fn(structure: Structure):
    """``(z, data) -> log p(y | z)`` for one structure (pure JAX, differentiable, vmappable)."""
    residual, _ = _compiled(
        structure.free,
        structure.fixed_dc,
        structure.fixed_cs,
        structure.regime,
        JOINT_HORIZON,
        structure.npad,
    )
    p = len(structure.free)

    def log_likelihood(z, data):
        x = data["lower"] + (data["upper"] - data["lower"]) * jax.nn.sigmoid(z)
        theta, log_sigma, rho = x[:p], x[p], x[p + 1]
        ones = jnp.ones_like(data["y"])
        f = residual(theta, data["rest"], data["tau"], jnp.zeros_like(ones), ones)
        e = (data["y"] - f) * data["mask"]
        r = jnp.exp(data["gap"] * jnp.log(rho))
        r = jnp.where(jnp.arange(e.size) == 0, 0.0, r)
        mean = r * jnp.concatenate([jnp.zeros(1, dtype=e.dtype), e[:-1]])
        var = jnp.exp(2.0 * log_sigma) * (1.0 - r**2) + 1e-14
        ll = jnp.sum(data["mask"] * (-0.5 * (e - mean) ** 2 / var - 0.5 * jnp.log(2.0 * jnp.pi * var)))
        return jnp.where(jnp.isfinite(ll), ll, _BAD)

    return log_likelihood


# --------------------------------------------------------------------------------------- the curve
def toy_horizon(problem: Problem, tau_max: float) -> int:
    """Toy steps that cover clock ``tau_max`` at the largest time scale allowed (rounded up to a power of
    two: few compiled programs serve every forecast)."""
    alpha_max = math.exp(problem.family.bounds["log_time_scale"][1])
    needed = max(JOINT_HORIZON, int(math.ceil(alpha_max * tau_max)) + 1)
    return 1 << (needed - 1).bit_length()


@functools.cache
def _curve_program(structure: Structure, horizon: int, npad: int):
    residual, _ = _compiled(
        structure.free, structure.fixed_dc, structure.fixed_cs, structure.regime, horizon, npad
    )
    p = len(structure.free)

    def curve(theta, rest, tau):
        ones = jnp.ones_like(tau)
        return residual(theta[:p], rest, tau, jnp.zeros_like(tau), ones)

    return jax.jit(jax.vmap(curve, in_axes=(0, None, None)))


def toy_curves(problem: Problem, x, tau, *, chunk: int = 512) -> np.ndarray:
    """The toy at clock values ``tau`` for each draw ``x`` (``(draws, dim)``, constrained): ``(draws,
    len(tau))``. The toy runs long enough for the largest time scale the prior allows."""
    tau = np.asarray(tau, dtype=np.float64)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    horizon = toy_horizon(problem, float(tau.max()) if tau.size else 0.0)
    npad = max(_CURVE_PAD, _pad(tau.size))  # one compiled program serves most calls
    tau_p = jnp.asarray(np.concatenate([tau, np.full(npad - tau.size, tau[-1] if tau.size else 0.0)]))
    program = _curve_program(problem.structure, horizon, npad)
    rest = jnp.asarray(problem.family.rest)
    out = []
    for i in range(0, x.shape[0], chunk):
        block = x[i : i + chunk]
        # A block is padded (with its first draw) to a power of two, at most `chunk`: every draw count
        # compiles one of a few programs. Unpadded, each new count compiled a program that stayed in
        # memory; an importance sampler calling with thousands of counts ran out of memory for LLVM.
        rows = block.shape[0]
        width = min(chunk, 1 << (rows - 1).bit_length())
        block = np.concatenate([block, np.repeat(block[:1], width - rows, axis=0)])
        out.append(np.asarray(program(jnp.asarray(block), rest, tau_p))[:rows, : tau.size])
    return np.concatenate(out, axis=0) if out else np.zeros((0, tau.size))


def natural_parameters(problem: Problem, x) -> dict[str, np.ndarray]:
    """The reported parameters of draws ``x`` (constrained, ``(draws, dim)``): delta_m, delta_c, the C,
    C+S and S fractions, context_bias, time_scale (toy time per unit of clock), sigma, rho."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    family = problem.family
    full = np.zeros((x.shape[0], len(NAMES)))
    p = len(family.free)
    full[:, list(family.free)] = x[:, :p]
    rest_index = [i for i in range(len(NAMES)) if i not in family.free]
    full[:, rest_index] = family.rest
    dm, slot1, f, slot3, beta, _, log_alpha = full.T
    dc = slot1 if family.fixed_dc else slot1 * dm / 2
    cs = slot3 if family.fixed_cs else f * slot3
    return {
        "delta_m": dm,
        "delta_c": dc,
        "c_fraction": f - cs,
        "cs_fraction": cs,
        "s_fraction": 1.0 - f,
        "context_bias": beta,
        "time_scale": np.exp(log_alpha),
        "sigma": np.exp(x[:, p]),
        "rho": x[:, p + 1],
    }


# ----------------------------------------------------------------------------- the SMC's reference
REFERENCE_INFLATION = 3.0  # the Gaussian's sd: this many least-squares standard errors (in z) ...
REFERENCE_FLOOR = 0.05  # ... at least this much (in z), at most the prior's own sd (logistic: pi / sqrt 3)
REFERENCE_NOISE_SD = {"log_sigma": 0.5, "rho": 0.3}  # the noise coordinates' sd around their centre (in x)


def reference_gaussian(problem: Problem, rng, n_starts: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian in the unconstrained coordinates around the least-squares fit of ``problem`` (the joint
    fit's multi-start search, :func:`cpi_theory.fit._joint.multistart_least_squares`): its mean and the
    Cholesky factor of its covariance, the Gauss-Newton covariance inflated by
    :data:`REFERENCE_INFLATION` (floored and capped per coordinate); the noise scale at the fit's residual
    RMSE, rho at 0.2.

    Used only as part of the tempered SMC's *reference* distribution (mixed with the prior): tempering
    from it to the posterior is exact whatever it is; it makes the narrow mode of a well-determined curve
    reachable, which random-walk moves from the prior alone miss (the backtest's toy curves: see
    ``cpi_theory/forecast/README.md``).
    """
    from scipy.linalg import cholesky

    from ..fit._joint import _padded, multistart_least_squares

    family, n = problem.family, problem.steps.size
    tau, y, w = _padded(problem.tau, problem.values, problem.structure.npad)
    theta, ssr, _ = multistart_least_squares(family, tau, y, w, n, rng, n_starts)
    jac = family.jacobian(theta, tau, y, w)[:n]
    p = theta.size
    s2 = max(ssr / max(n - p, 1), 1e-8)
    cov_x = s2 * np.linalg.pinv(jac.T @ jac, rcond=1e-10)
    sigma = max(math.sqrt(ssr / n), 2e-4)
    x = np.concatenate([theta, [math.log(sigma), min(0.2, problem.upper[-1])]])
    lower, upper = problem.lower, problem.upper
    u = np.clip((x - lower) / (upper - lower), 1e-3, 1 - 1e-3)
    x = lower + u * (upper - lower)
    dzdx = (upper - lower) / ((x - lower) * (upper - x))  # d logit((x - l) / (u - l)) / dx
    cov = np.zeros((p + 2, p + 2))
    cov[:p, :p] = cov_x
    cov[p, p] = REFERENCE_NOISE_SD["log_sigma"] ** 2
    cov[p + 1, p + 1] = REFERENCE_NOISE_SD["rho"] ** 2
    cov_z = REFERENCE_INFLATION**2 * (dzdx[:, None] * cov * dzdx[None, :])
    sd = np.sqrt(np.clip(np.diag(cov_z), 0.0, None))
    target = np.clip(sd, REFERENCE_FLOOR, math.pi / math.sqrt(3.0))
    scale = np.where(sd > 0, target / np.maximum(sd, 1e-300), 0.0)
    cov_z = scale[:, None] * cov_z * scale[None, :] + np.diag(np.where(sd > 0, 0.0, target**2))
    cov_z = 0.5 * (cov_z + cov_z.T) + 1e-10 * np.eye(p + 2)
    try:
        chol = cholesky(cov_z, lower=True)
    except np.linalg.LinAlgError:
        chol = np.diag(target)
    return problem.to_z(x, margin=1e-3), chol
