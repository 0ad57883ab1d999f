"""The late-time law of M_C(t) for every mixture with W_V frozen (lr_v = 0): limit, rate, phase.

Derivation (sympy supplies the amplitudes from the reduced model; the rest is the argument below, checked
against exact runs of 10^5 to 10^7 steps in tests/test_late_time.py).

1. Saturation. With W_V frozen a point's loss depends on its attention only. At late times every context
   point saturates on the token whose value vector serves its target: C and augmented points on their
   context, C+S points on their subject (S points are saturated from the start: their only competitor is the
   relation, at weight e^rho). With ``u_k = s_k (u_c - u_s)`` the point's score gap toward that token
   (``s_k = +1`` for C and augmented points, ``-1`` for C+S), the loss approaches its limit like
   ``a_k exp(-u_k)``: ``a_k`` is the derivative of the class loss in the attention leaked to the other token,
   at saturation (:func:`late_time_expressions`; it is Lemma 2's margin there).
2. Invariants. ``q`` moves only along ``phi(c_k) - phi(s_k)``, so ``alpha_k + beta_k`` and ``X + Y`` are
   constant and ``X - sum_k n_k alpha_k`` is conserved (``alpha_k, beta_k``: a point's own context / subject
   components, ``X, Y``: the theta_C, theta_S components). The probe's score gap ``D = (X - Y) / sqrt2``
   (c* and s* have no own components) is then an exact function of the gaps:
   ``D (1 + N) = beta + sum_k n_k s_k u_k``, ``N = n_C + n_CS + n_AUG``, ``beta`` the initial tilt
   (``context_bias``).
3. Balance. GD on the tails gives ``du_k/dt = F_k + s_k G`` with ``F_k = (lr_kq / n) a_k exp(-u_k)``
   (``n`` every training point, S included: the loss is a mean) and ``G = dD/dt = sum_j n_j s_j F_j``. The
   ansatz ``u_k = log t + c_k`` closes with ``t F_k -> 1 - s_k g``, ``t G -> g``:

       g = (n_C + n_AUG - n_CS) / (1 + n_C + n_AUG + n_CS)            (|g| < 1: every class stays active)
       D(t) = g log t + d0 + O(log t / t),
       d0 = (beta + sum_k n_k s_k log(lr_kq a_k / (n (1 - s_k g)))) / (1 + N).

   So the probe's attention on its context tends to 1 (g > 0), to 0 (g < 0), or to ``sigmoid(d0)`` (g = 0):
   M_C tends to ``M(1) = sigmoid(lambda_C - o_c)`` ("context"), ``M(0) = sigmoid(o_c - lambda_M)``
   ("memory"), or the interior plateau ``M(sigmoid(d0))``, with ``M(sigma) = sigmoid(sigma (lambda_C - o_c)
   - (1 - sigma)(lambda_M - o_c))``. The approach is a power law: ``M_C(t) - limit ~ amplitude t^-|g|``.
   Only the class counts decide the limit's kind; delta_M and delta_C set the values and d0.

Scope. Exact for the reduced GD dynamics as t -> infinity with the relation's attention neglected: it
weighs at most ``e^rho t^-1/2`` against the ``1/t`` tails, so the law holds for ``t << e^(-2 rho)`` (1e26
steps at the default rho = -30). With W_V trained (lr_v > 0) the loss goes to 0 and W_V grows too; no
closed form is derived here (:class:`LateTimeLaw` says so, ``closed_form=False``).
"""

import dataclasses
import functools

import numpy as np
import sympy as sp

from ..config._config import Config, resolve_config
from ..reduced._symbolic import reduced_model
from ._paper import _param_subs, lemma3_value_logits

# Classes that compete for attention at late times, and the token each saturates on (s_k = +1: context).
_SIDE = {"C": 1, "CS": -1, "AUG": 1}
_COUNT_FIELD = {
    "C": "n_context_critical",
    "CS": "n_non_context_critical",
    "S": "n_subject_only",
    "AUG": "n_counterfactual_augmented",
}
# Slope |g| below this (relative to the class sizes) is the plateau's exact balance n_C + n_AUG = n_CS.
_BALANCE_TOL = 1e-12


@dataclasses.dataclass(frozen=True)
class LateTimeExpressions:
    """The late-time law as sympy equations (for the appendix; :func:`late_time_law` evaluates them)."""

    amplitude: dict  # class -> Eq(a_k, compact form in Lemma 3's symbols), checked equal to the derivation
    derived_amplitude: dict  # class -> d loss_k / d epsilon at saturation, as sympy derives it
    slope: sp.Eq  # g in the class sizes
    offset: sp.Eq  # d0 in beta, the amplitudes, the class sizes and lr_kq
    context_reliance: sp.Eq  # M(sigma): the probe's M_C at attention sigma on its context


def _derived_amplitudes() -> dict:
    """a_k = d loss_k / d epsilon at epsilon = 0, from the reduced model's class losses: W_V at its pretrained
    value, attention ``1 - epsilon`` on the saturating token, ``epsilon`` on the other, 0 on the relation."""
    m = reduced_model()
    eps = sp.Symbol("epsilon", positive=True)
    frozen = {w: sp.Integer(0) for w in m.w.values()}
    amplitude = {}
    for k, side in _SIDE.items():
        sigma = m.attention_sym[k]
        near, far = ("c", "s") if side > 0 else ("s", "c")
        attention = {sigma[near]: 1 - eps, sigma[far]: eps, sigma["r"]: sp.Integer(0)}
        logits = {
            z: m.logit_expr[k][t].xreplace(frozen).xreplace(attention) for t, z in m.logit_sym[k].items()
        }
        loss = m.class_loss[k].xreplace({m.logit_shift[k]: sp.Integer(0)}).xreplace(logits)
        amplitude[k] = sp.diff(loss, eps).subs(eps, 0)
    return amplitude


def _compact_amplitudes() -> dict:
    """The same amplitudes in Lemma 3's symbols (Z the softmax normalizer of an untrained token's votes)."""
    p = reduced_model().params
    lam_c, lam_m, o_c, d_c, d_m = (p[n] for n in ("lambda_C", "lambda_M", "o_c", "delta_c", "delta_m"))
    z = sp.Symbol("Z", positive=True)
    return {
        "C": (1 - d_c) * (lam_c - o_c),
        "CS": (1 - d_m) * (lam_m - lam_c),
        # the augmented point's subject votes for its own memorized answer, which the saturated context's
        # softmax still gives probability (1 - delta_C) e^{o_c} / Z
        "AUG": (1 - d_c) * (lam_c - o_c) + (1 - d_c) * (lam_m - o_c) * sp.exp(o_c) / z,
    }


def _check_compact(derived: dict, compact: dict) -> None:
    """The compact forms equal the derivation (Lemma 3 substituted), checked at random parameter points to
    30 digits: the displayed equations are the derived ones."""
    m = reduced_model()
    p = m.params
    z = sp.Symbol("Z", positive=True)
    lemma3 = {p["lambda_C"]: m.lam_c, p["lambda_M"]: m.lam_m}
    normalizer = p["K_S"] + (p["K_A"] - 1) * sp.exp(p["o_c"]) + sp.exp(p["o_r"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        d_m = sp.Rational(int(rng.integers(40, 95)), 100)
        point = {
            p["delta_m"]: d_m,
            p["delta_c"]: d_m * sp.Rational(int(rng.integers(5, 45)), 100),
            p["o_c"]: sp.Rational(int(rng.integers(-50, 50)), 100),
            p["o_r"]: sp.Rational(int(rng.integers(-50, 50)), 100),
            p["K_A"]: int(rng.integers(40, 90)),
            p["K_S"]: int(rng.integers(40, 90)),
            **{p[f"n_{k}"]: int(rng.integers(1, 9)) for k in ("C", "CS", "S", "AUG")},
        }
        for k in derived:
            a = derived[k].xreplace(lemma3).xreplace(point).evalf(30)
            b = compact[k].xreplace({z: normalizer}).xreplace(lemma3).xreplace(point).evalf(30)
            if abs(a - b) > 1e-25 * (1 + abs(a)):
                raise RuntimeError(f"late-time amplitude {k}: compact form {compact[k]} != derivation")


@functools.cache
def late_time_expressions() -> LateTimeExpressions:
    """The saturation amplitudes derived from the reduced model's class losses (shown in compact form, checked
    equal to the derivation), the slope, the offset and M(sigma), as sympy equations."""
    derived = _derived_amplitudes()
    compact = _compact_amplitudes()
    _check_compact(derived, compact)
    amplitude = {k: sp.Eq(sp.Symbol(f"a_{k}"), compact[k]) for k in _SIDE}
    n = {k: sp.Symbol(f"n_{k}", nonnegative=True) for k in _SIDE}
    g, d0, beta, lr = sp.symbols("g d_0 beta eta_KQ", real=True)
    n_all = sp.Symbol("n", positive=True)
    total = sum(n.values())
    slope = sp.Eq(g, (n["C"] + n["AUG"] - n["CS"]) / (1 + total))
    offset = sp.Eq(
        d0,
        (
            beta
            + sum(
                n[k] * side * sp.log(lr * sp.Symbol(f"a_{k}") / (n_all * (1 - side * g)))
                for k, side in _SIDE.items()
            )
        )
        / (1 + total),
    )
    p = reduced_model().params
    s = sp.Symbol("sigma", real=True)
    mc = 1 / (1 + sp.exp(-(s * (p["lambda_C"] - p["o_c"]) - (1 - s) * (p["lambda_M"] - p["o_c"]))))
    return LateTimeExpressions(
        amplitude=amplitude,
        derived_amplitude=derived,
        slope=slope,
        offset=offset,
        context_reliance=sp.Eq(sp.Function("M")(s), mc),
    )


@functools.cache
def _amplitude_functions():
    """(the parameter symbols, class -> numerical function of them) of the derived amplitudes."""
    m = reduced_model()
    lemma3 = {m.params["lambda_C"]: m.lam_c, m.params["lambda_M"]: m.lam_m}
    exprs = {k: e.xreplace(lemma3) for k, e in late_time_expressions().derived_amplitude.items()}
    symbols = sorted(set().union(*(e.free_symbols for e in exprs.values())), key=str)
    return symbols, {k: sp.lambdify(symbols, e, "numpy") for k, e in exprs.items()}


def saturation_amplitudes(config=None) -> dict[str, float]:
    """``a_k`` for the classes C, CS, AUG at the configuration (see the module docstring): the late-time
    loss of a class-k point is its limit plus ``a_k exp(-u_k)``."""
    symbols, functions = _amplitude_functions()
    values = _param_subs(resolve_config(config))
    args = [float(values[symbol]) for symbol in symbols]
    return {k: float(f(*args)) for k, f in functions.items()}


@dataclasses.dataclass(frozen=True)
class LateTimeLaw:
    """Where M_C(t) ends for a mixture, how fast, and whether that is above or below its start.

    ``closed_form``: the law below holds (W_V frozen); otherwise ``limit`` and the rates are None and
    ``reason`` says why. M_C(t) ~ ``limit + amplitude * t ** -exponent`` (exponent ``|g|``; at ``g = 0`` the
    approach is O(log t / t)); the probe's score gap ~ ``score_gap_slope * log t + score_gap_offset``.
    """

    closed_form: bool
    limit: float | None  # M_C as t -> infinity
    limit_kind: str  # "context" (attention -> c*), "memory" (-> s*), "plateau" (interior), "not derived"
    exponent: float | None  # |g|: the power of t in the approach to the limit
    amplitude: float | None  # the coefficient of t^-exponent (None on the plateau)
    score_gap_slope: float | None  # g
    score_gap_offset: float | None  # d0
    start: float  # M_C(0) (relation's attention neglected, as in the limit)
    versus_start: str  # "above start", "below start", "at start" or "unknown"
    saturation_amplitudes: dict  # a_k per competing class present
    reason: str  # how it was obtained, or why it is not

    def context_reliance(self, t) -> np.ndarray:
        """The late-time approximation of M_C at steps ``t`` (> 0): ``M(sigmoid(g log t + d0))``, exact up to
        O(log t / t) in the score gap."""
        if not self.closed_form:
            raise ValueError(f"no late-time law here: {self.reason}")
        gap = self.score_gap_slope * np.log(np.asarray(t, dtype=np.float64)) + self.score_gap_offset
        return np.asarray(self._m_of(1.0 / (1.0 + np.exp(-gap))))

    _m_of: object = dataclasses.field(default=None, repr=False, compare=False)


def _probe_mc(cfg: Config):
    """M(sigma): the probe's M_C at attention sigma on its context (relation neglected, W_V frozen)."""
    lem = lemma3_value_logits(cfg)
    to_context, to_memory = lem.self_copy - cfg.o_c, lem.memory - cfg.o_c

    def m_of(sigma):
        return 1.0 / (1.0 + np.exp(-(sigma * to_context - (1.0 - sigma) * to_memory)))

    return m_of, to_context + to_memory


def late_time_law(config=None, *, context_bias: float = 0.0) -> LateTimeLaw:
    """The late-time law of M_C for the configuration's mixture (module docstring), W_V frozen.

    ``context_bias``: the initial attention tilt beta (the probe's initial score gap; 0 is the paper's
    pretrained state). Configurations with lr_v != 0 get ``closed_form=False`` and the reason.
    """
    cfg = resolve_config(config)
    beta = float(context_bias)
    if not np.isfinite(beta):
        raise ValueError(f"context_bias: must be finite, got {context_bias!r}")
    m_of, slope_of_logit = _probe_mc(cfg)
    start = float(m_of(1.0 / (1.0 + np.exp(-beta))))
    counts = dict(zip(("C", "CS", "S", "AUG"), cfg.class_counts(), strict=True))
    present = [k for k in _SIDE if counts[k] > 0]
    if cfg.lr_v != 0:
        return LateTimeLaw(
            closed_form=False,
            limit=None,
            limit_kind="not derived",
            exponent=None,
            amplitude=None,
            score_gap_slope=None,
            score_gap_offset=None,
            start=start,
            versus_start="unknown",
            saturation_amplitudes={},
            reason=(
                "lr_v != 0: with W_V trained the loss goes to 0 and W_V grows like log t too; no closed form "
                "is derived (run the exact engine to the horizon instead)"
            ),
        )
    amplitudes = saturation_amplitudes(cfg)
    amplitudes = {k: amplitudes[k] for k in present}
    if not present:
        return LateTimeLaw(
            closed_form=True,
            limit=start,
            limit_kind="plateau",
            exponent=0.0,
            amplitude=None,
            score_gap_slope=0.0,
            score_gap_offset=beta,
            start=start,
            versus_start="at start",
            saturation_amplitudes={},
            reason="no context points: nothing moves the probe's attention (S points are saturated)",
            _m_of=m_of,
        )
    n_competing = sum(counts[k] for k in _SIDE)
    n_points = sum(counts.values())
    balance = counts["C"] + counts["AUG"] - counts["CS"]
    if abs(balance) <= _BALANCE_TOL * n_competing:
        balance = 0.0
    g = balance / (1.0 + n_competing)
    d0 = (
        beta
        + sum(
            counts[k] * _SIDE[k] * np.log(cfg.lr_kq * amplitudes[k] / (n_points * (1 - _SIDE[k] * g)))
            for k in present
        )
    ) / (1.0 + n_competing)
    if g > 0:
        kind, limit = "context", float(m_of(1.0))
        # 1 - sigma ~ e^-d0 t^-g; dM/dsigma = M (1 - M) (lambda_C + lambda_M - 2 o_c)
        amplitude = -limit * (1 - limit) * slope_of_logit * float(np.exp(-d0))
    elif g < 0:
        kind, limit = "memory", float(m_of(0.0))
        amplitude = limit * (1 - limit) * slope_of_logit * float(np.exp(d0))
    else:
        kind, limit = "plateau", float(m_of(1.0 / (1.0 + np.exp(-d0))))
        amplitude = None
    versus = "above start" if limit > start else "below start" if limit < start else "at start"
    return LateTimeLaw(
        closed_form=True,
        limit=limit,
        limit_kind=kind,
        exponent=abs(float(g)),
        amplitude=amplitude,
        score_gap_slope=float(g),
        score_gap_offset=float(d0),
        start=start,
        versus_start=versus,
        saturation_amplitudes=amplitudes,
        reason="closed form (W_V frozen; relation's attention neglected, valid for t << exp(-2 relation_score))",
        _m_of=m_of,
    )


def infinite_horizon_boundary(config=None) -> float | None:
    """The C+S fraction (of the C and C+S points, their total and the augmented count fixed) where the
    t -> infinity limit switches from "context" to "memory": ``n_CS = n_C + n_AUG``, i.e.
    ``1/2 + n_AUG / (2 (n_C + n_CS))``. It does not depend on delta_M or delta_C (they only set the limit's
    values). None when it lies above 1 (the limit is "context" at every fraction). W_V frozen only."""
    cfg = resolve_config(config)
    if cfg.lr_v != 0:
        raise ValueError("lr_v: the infinite-horizon boundary is derived for W_V frozen (lr_v = 0) only")
    n_c, n_cs, _, n_aug = cfg.class_counts()
    total = n_c + n_cs
    if total <= 0:
        raise ValueError("n_context_critical + n_non_context_critical: must be > 0 for a C+S fraction")
    fraction = 0.5 + n_aug / (2.0 * total)
    return float(fraction) if fraction <= 1.0 else None


__all__ = [
    "LateTimeExpressions",
    "LateTimeLaw",
    "infinite_horizon_boundary",
    "late_time_expressions",
    "late_time_law",
    "saturation_amplitudes",
]
