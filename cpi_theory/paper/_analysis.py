"""Beyond the paper: peak, late-time plateau, phase boundary of the inversion, and the lr_v / lr_kq effect.

All by the exact reduced engine (:mod:`cpi_theory.reduced._engine`), so every answer holds for the full model.

Late-time plateau (a closed form, derived here; tested against long simulations). With W_V frozen and only
C and C+S points, two invariants follow from the update: ``kappa_thC = sum_k n_k kappa_{k,c}`` and
``kappa_thS = sum_k n_k kappa_{k,s}`` (the shared direction receives the sum of the per-point gradients).
At late times every training point's attention saturates (C on its context, C+S on its subject) and its
loss approaches its limit like ``a_k exp(-Delta_k)``, ``Delta_k`` the point's score gap, with
``a_C = (lambda_C - o_c)(1 - delta_C)`` and ``a_CS = (lambda_M - lambda_C)(1 - delta_M)`` (Lemma 2's margin
at saturated attention, using Lemma 3). Then ``exp(Delta_k) ~ a_k t / N`` and with the invariants the
probe's score gap ``D = kappa_thC - kappa_thS`` obeys ``D (1 + n_C + n_CS) = sqrt2 [(n_C - n_CS) log t +
n_C log a_C - n_CS log a_CS + const]``: for |D_C| = |D_C+S| = n it converges to

    D_inf = sqrt2 log(a_C / a_CS) / (2 + 1/n),

and M_C(inf) = sigmoid(s_c (lambda_C - o_c) - s_s (lambda_M - o_c)), ``s_c = sigmoid(D_inf / sqrt2)``,
``s_s = 1 - s_c`` (the relation's attention e^rho is neglected). For unequal class sizes D drifts like
log t: no plateau, M_C creeps (logarithmically) toward the larger class's preference.
"""

import dataclasses

import numpy as np
import scipy.optimize
import sympy as sp

from .._precision import requires_float64
from ..config._config import resolve_config
from ..engine import Summary, summarize
from ..reduced import reduced_params, reduced_train
from ._paper import lemma3_value_logits

# ---- peak ---------------------------------------------------------------------------------------------------


@requires_float64
def mc_trajectory(config=None) -> np.ndarray:
    """M_C at every step 0..steps of the exact GD dynamics (reduced engine)."""
    cfg = resolve_config(config)
    out = reduced_train(reduced_params(cfg), steps=cfg.steps, record_every=1)
    return np.asarray(out.records["context_reliance"])


@requires_float64
def inversion_peak(config=None) -> Summary:
    """The one :class:`cpi_theory.engine.Summary` of M_C over steps 0..steps (exact GD, reduced engine):
    start, peak and its step, final, ``depth`` = peak - final, and the shape class.

    The peak is *interior* (a rise then a fall within the horizon) when ``0 < s.peak_step < s.final_step``:
    the first maximum is neither the start nor the last step. ``s.inversion`` is the stricter shape class
    (a rise and a fall of more than the summary's tolerance).
    """
    mc = mc_trajectory(config)
    return summarize(np.arange(mc.shape[0]), mc)


# ---- plateau ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plateau:
    """The late-time limit of the dynamics in closed form (:func:`plateau`)."""

    context_reliance: float  # M_C(inf)
    score_gap: float  # D_inf: the limit of the probe's score gap kappa_thC - kappa_thS
    attention_context: float  # the probe's attention on its context in the limit, sigmoid(D_inf / sqrt2)
    a_c: float  # a_C = (lambda_C - o_c)(1 - delta_C): the C points' saturation amplitude
    a_cs: float  # a_CS = (lambda_M - lambda_C)(1 - delta_M): the C+S points' saturation amplitude


def plateau(config=None) -> Plateau:
    """The late-time limit of M_C in closed form (see the module docstring), for lr_v = 0 and C / C+S data.

    Raises ValueError outside the regime where the limit exists.
    """
    cfg = resolve_config(config)
    n_c, n_cs, n_s, n_aug = cfg.class_counts()
    if cfg.lr_v != 0 or n_s or n_aug:
        raise ValueError("the closed-form plateau needs lr_v = 0 and only C and C+S points")
    if n_c != n_cs or n_c == 0:
        raise ValueError(
            f"no plateau: with |D_C| = {n_c} != |D_C+S| = {n_cs} the probe's score gap drifts like log t"
        )
    lem = lemma3_value_logits(cfg)
    lam_c, lam_m, o_c = lem.self_copy, lem.memory, cfg.o_c
    a_c = (lam_c - o_c) * (1 - cfg.delta_c)
    a_cs = (lam_m - lam_c) * (1 - cfg.delta_m)
    gap = np.sqrt(2.0) * np.log(a_c / a_cs) / (2.0 + 1.0 / n_c)
    s_c = 1.0 / (1.0 + np.exp(-gap / np.sqrt(2.0)))
    logit = s_c * (lam_c - o_c) - (1.0 - s_c) * (lam_m - o_c)
    return Plateau(
        context_reliance=float(1.0 / (1.0 + np.exp(-logit))),
        score_gap=float(gap),
        attention_context=float(s_c),
        a_c=float(a_c),
        a_cs=float(a_cs),
    )


@dataclasses.dataclass(frozen=True)
class PlateauExpressions:
    """The plateau's closed form as sympy equations ``symbol = expression`` (for the appendix)."""

    a_c: sp.Eq  # a_C = (lambda_C - o_c)(1 - delta_c)
    a_cs: sp.Eq  # a_CS = (lambda_M - lambda_C)(1 - delta_m)
    score_gap: sp.Eq  # D_infty in a_C, a_CS and the class size n
    context_reliance: sp.Eq  # M_C(infty) in D_infty


def plateau_expressions() -> PlateauExpressions:
    """The plateau's closed form as sympy equations (for the appendix; :func:`plateau` evaluates it)."""
    lam_c, lam_m, o_c, d_c, d_m, n = sp.symbols("lambda_C lambda_M o_c delta_c delta_m n", real=True)
    a_c = (lam_c - o_c) * (1 - d_c)
    a_cs = (lam_m - lam_c) * (1 - d_m)
    gap = sp.sqrt(2) * sp.log(sp.Symbol("a_C") / sp.Symbol("a_CS")) / (2 + 1 / n)
    s_c = 1 / (1 + sp.exp(-sp.Symbol("D_infty") / sp.sqrt(2)))
    m_inf = 1 / (1 + sp.exp(-(s_c * (lam_c - o_c) - (1 - s_c) * (lam_m - o_c))))
    return PlateauExpressions(
        a_c=sp.Eq(sp.Symbol("a_C"), a_c),
        a_cs=sp.Eq(sp.Symbol("a_CS"), a_cs),
        score_gap=sp.Eq(sp.Symbol("D_infty"), gap),
        context_reliance=sp.Eq(sp.Symbol(r"M_C(\infty)"), m_inf),
    )


# ---- phase boundary -----------------------------------------------------------------------------------------

_AXES = ("cs_fraction", "delta_m", "delta_c")


def _with_axis(cfg, axis: str, value: float):
    if axis == "cs_fraction":
        total = cfg.n_context_critical + cfg.n_non_context_critical
        return cfg.replace(n_context_critical=total * (1 - value), n_non_context_critical=total * value)
    return cfg.replace(**{axis: float(value)})


@requires_float64
def inversion_depth(config=None) -> float:
    """The size of the inversion: the summary's ``depth`` = peak - final M_C over the configuration's
    horizon (0 when M_C only rises or reaches its maximum at the end)."""
    return inversion_peak(config).depth


@requires_float64
def phase_boundary(
    config=None, *, axis: str = "cs_fraction", bounds: tuple[float, float], threshold: float = 0.01
) -> float:
    """The value of ``axis`` in ``bounds`` where the inversion's depth (peak - final M_C over ``steps``) crosses
    ``threshold``: below/above it the inversion exists, on the other side it has disappeared.

    ``axis``: ``cs_fraction`` (C+S share of the C and C+S points at fixed total; real class sizes),
    ``delta_m`` or ``delta_c``. Brent's method on the reduced engine; ValueError if ``bounds`` do not
    bracket a crossing.
    """
    if axis not in _AXES:
        raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")
    cfg = resolve_config(config)
    f = lambda v: inversion_depth(_with_axis(cfg, axis, v)) - threshold
    lo, hi = bounds
    f_lo, f_hi = f(lo), f(hi)
    if np.sign(f_lo) == np.sign(f_hi):
        raise ValueError(
            f"{axis} in {bounds} does not bracket the boundary: depth - threshold = {f_lo:.4g}, {f_hi:.4g}"
        )
    return float(scipy.optimize.brentq(f, lo, hi, xtol=1e-10))


# ---- lr_v / lr_kq -----------------------------------------------------------------------------------------


@requires_float64
def value_rate_effect(config=None, ratios=(0.0, 0.1, 0.3, 1.0)) -> dict[float, Summary]:
    """:func:`inversion_peak` at each ratio lr_v / lr_kq (lr_kq from the configuration): ratio -> summary."""
    cfg = resolve_config(config)
    return {float(r): inversion_peak(cfg.replace(lr_v=float(r) * cfg.lr_kq)) for r in ratios}


__all__ = [
    "Plateau",
    "PlateauExpressions",
    "inversion_depth",
    "inversion_peak",
    "mc_trajectory",
    "phase_boundary",
    "plateau",
    "plateau_expressions",
    "value_rate_effect",
]
