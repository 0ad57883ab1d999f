"""The paper's lemmas and propositions (Goyal et al. 2025, §5 and App. B) as functions of any configuration.

Everything is computed from the symbolic reduced model (:mod:`cpi_theory.reduced._symbolic`) or the exact reduced
engine (:mod:`cpi_theory.reduced._engine`); the tests check each against the full d x d model.
"""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
import scipy.optimize
import sympy as sp

from .._precision import requires_float64
from ..config._config import Config, resolve_config
from ..reduced import (
    reduced_initial_state,
    reduced_metrics_jit,
    reduced_params,
    reduced_step,
    reduced_velocity_jit,
)
from ..reduced._compiled import _forward
from ..reduced._inputs import symbol_values
from ..reduced._symbolic import reduced_model

# ---- Lemma 3: the pretrained value logits --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Lemma3ValueLogits:
    """Lemma 3 / SPEC §3: the pretrained value-table entries and the probabilities they encode.

    ``self_copy`` = V[c, c] = logit(delta_C) + log Z and ``memory`` = V[a, s] = logit(delta_M) + log Z with
    Z = (K_A - 1) e^{o_c} + e^{o_r} + K_S; the other entries of a column: ``other_answer`` (o_c),
    ``relation`` (o_r) and ``subject`` (0). ``p_self_copy`` = softmax(v(c))[c] (= delta_C) and ``p_memory``
    = softmax(v(s))[a] (= delta_M), evaluated from the table rather than assumed.
    """

    self_copy: float
    memory: float
    other_answer: float
    relation: float
    subject: float
    p_self_copy: float
    p_memory: float


def lemma3_value_logits(config=None) -> Lemma3ValueLogits:
    """Lemma 3's table entries for a configuration (:class:`Lemma3ValueLogits`)."""
    cfg = resolve_config(config)
    m = reduced_model()
    subs = _param_subs(cfg)
    lam_c, lam_m = float(m.lam_c.subs(subs)), float(m.lam_m.subs(subs))
    rest = (cfg.n_answers - 1) * np.exp(cfg.o_c) + np.exp(cfg.o_r) + cfg.n_subjects
    return Lemma3ValueLogits(
        self_copy=lam_c,
        memory=lam_m,
        other_answer=cfg.o_c,
        relation=cfg.o_r,
        subject=0.0,
        p_self_copy=float(np.exp(lam_c) / (np.exp(lam_c) + rest)),
        p_memory=float(np.exp(lam_m) / (np.exp(lam_m) + rest)),
    )


def _param_subs(cfg: Config) -> dict:
    p = reduced_model().params
    n_c, n_cs, n_s, n_aug = cfg.class_counts()
    values = {
        "n_C": n_c,
        "n_CS": n_cs,
        "n_S": n_s,
        "n_AUG": n_aug,
        "K_A": cfg.n_answers,
        "K_S": cfg.n_subjects,
        "o_c": cfg.o_c,
        "o_r": cfg.o_r,
        "delta_c": cfg.delta_c,
        "delta_m": cfg.delta_m,
    }
    return {p[k]: sp.Float(v, 30) if isinstance(v, float) else sp.Integer(v) for k, v in values.items()}


# ---- Lemma 4: the margins at t = 0 -----------------------------------------------------------------------

SIGMA0 = sp.Symbol("sigma_0", positive=True)  # attention on c (and on s) at t = 0: 1 / (2 + e^rho)


@dataclasses.dataclass(frozen=True)
class Lemma4Margins:
    """Closed forms (sympy) of Lemma 4's margins at t = 0, in ``lambda_C``, ``lambda_M``, ``o_c``, ``o_r``,
    ``K_A``, ``K_S`` and ``sigma_0``."""

    m_c: sp.Expr  # m_C: a C point's margin
    m_cs: sp.Expr  # m_{C+S}: a C+S point's margin


@functools.lru_cache(maxsize=1)
def lemma4_margins() -> Lemma4Margins:
    """Closed forms of m_C and m_{C+S} at t = 0, derived by sympy from the reduced model's margin.

    Substitutes the pretrained state (Delta W_V = 0, attention sigma_0 on c and on s, 1 - 2 sigma_0 on r)
    into Lemma 2's margin <v(c) - v(s), e_c - softmax(z)> and simplifies. Class sizes drop out.
    """
    return Lemma4Margins(m_c=_margin_at_t0("C"), m_cs=_margin_at_t0("CS"))


def _margin_at_t0(k: str) -> sp.Expr:
    """Class ``k``'s margin (reduced model) at the pretrained state, simplified."""
    m = reduced_model()
    expr, vc, vs = m.margin[k]
    subs = {s: 0 for s in m.w.values()}
    subs[m.logit_shift[k]] = 0
    sigma = m.attention_sym[k]
    at0 = {sigma["c"]: SIGMA0, sigma["s"]: SIGMA0, sigma["r"]: 1 - 2 * SIGMA0}
    for t in m.logit_sym[k]:
        subs[m.logit_sym[k][t]] = m.logit_expr[k][t].subs(subs).subs(at0)
        subs[vc[t]] = m.column_expr[k]["c"][t].subs(subs)
        subs[vs[t]] = m.column_expr[k]["s"][t].subs(subs)
    return sp.simplify(sp.factor_terms(sp.together(expr.subs(subs))))


@dataclasses.dataclass(frozen=True)
class Lemma4Values:
    """Lemma 4's margins m_C and m_{C+S} at t = 0 for a configuration, and the paper's claims about them."""

    m_c: float
    m_cs: float

    @property
    def signs_hold(self) -> bool:
        """m_C > 0 > m_{C+S}: at t = 0 C points pull attention to the context, C+S points to the subject."""
        return self.m_c > 0 > self.m_cs

    @property
    def size_holds(self) -> bool:
        """|m_C| > |m_{C+S}|: the pull of C points dominates."""
        return abs(self.m_c) > abs(self.m_cs)

    @property
    def holds(self) -> bool:
        return self.signs_hold and self.size_holds


def lemma4_values(config=None) -> Lemma4Values:
    """Lemma 4's m_C and m_{C+S} at t = 0 for a configuration (:class:`Lemma4Values`)."""
    cfg = resolve_config(config)
    p = reduced_model().params
    lem3 = lemma3_value_logits(cfg)
    sigma0 = 1.0 / (2.0 + np.exp(cfg.relation_score))
    subs = {
        p["lambda_C"]: lem3.self_copy,
        p["lambda_M"]: lem3.memory,
        p["o_c"]: cfg.o_c,
        p["o_r"]: cfg.o_r,
        p["K_A"]: cfg.n_answers,
        p["K_S"]: cfg.n_subjects,
        SIGMA0: sigma0,
    }
    n_c, n_cs, n_s, n_aug = cfg.class_counts()
    subs.update({p["n_C"]: n_c, p["n_CS"]: n_cs, p["n_S"]: n_s, p["n_AUG"]: n_aug})
    margins = lemma4_margins()
    return Lemma4Values(
        m_c=float(sp.N(margins.m_c.subs(subs), 20)), m_cs=float(sp.N(margins.m_cs.subs(subs), 20))
    )


# ---- Assumptions -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Assumptions:
    """The paper's assumptions for one configuration: each field is None where the assumption holds, else
    why it is violated (:func:`check_assumptions`)."""

    frozen_w_v: str | None  # Proposition 1 trains W_KQ only (lr_v = 0)
    balanced_classes: str | None  # |D_C| = |D_C+S|
    no_subject_only_points: str | None  # the base setting has no S points
    no_augmentation: str | None  # nor counterfactual-augmented points
    uniform_value_logits: str | None  # Lemma 3: o_c = o_r = 0
    relation_ignored: str | None  # Assumption 5: sigma_r(0) < 1e-6
    memory_beats_self_copy: str | None  # Assumption 6: delta_M > 2 delta_C
    lemma4_margins: str | None  # Lemma 4: m_C > 0 > m_C+S, |m_C| > |m_C+S|

    @property
    def violated(self) -> dict[str, str]:
        """Name -> why, for the violated assumptions (in field order; empty if none)."""
        reasons = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: why for name, why in reasons.items() if why is not None}

    @property
    def holds(self) -> bool:
        """No assumption is violated."""
        return not self.violated


def check_assumptions(config=None) -> Assumptions:
    """Check the paper's assumptions against ``config`` (:class:`Assumptions`).

    Checked: Proposition 1's setting (W_V frozen, |D_C| = |D_C+S|, no S or augmented points), Lemma 3's
    uniform off-target value logits (o_c = o_r = 0), Assumption 5 (r gets ~no attention: sigma_r(0) < 1e-6),
    Assumption 6 (delta_M > 2 delta_C; also enforced by Config) and Lemma 4's conclusion m_C > 0 > m_C+S,
    |m_C| > |m_C+S|, on which Proposition 1 rests.
    """
    cfg = resolve_config(config)
    n_c, n_cs, n_s, n_aug = cfg.class_counts()
    sigma_r = np.exp(cfg.relation_score) / (2.0 + np.exp(cfg.relation_score))
    lem4 = lemma4_values(cfg)
    return Assumptions(
        frozen_w_v=f"Proposition 1 trains W_KQ only; lr_v = {cfg.lr_v}" if cfg.lr_v != 0 else None,
        balanced_classes=(
            f"Proposition 1 assumes |D_C| = |D_C+S|; got {n_c} vs {n_cs}" if n_c != n_cs else None
        ),
        no_subject_only_points=(
            f"the base setting has no S points; got {n_s} (Prop. 2 adds them)" if n_s else None
        ),
        no_augmentation=f"the paper's model has no augmented points; got {n_aug}" if n_aug else None,
        uniform_value_logits=(
            f"Lemma 3 takes o_c = o_r = 0; got o_c={cfg.o_c}, o_r={cfg.o_r}"
            if cfg.o_c != 0 or cfg.o_r != 0
            else None
        ),
        relation_ignored=(
            f"Assumption 5 needs r to get ~no attention; sigma_r(0) = {sigma_r:.3g}"
            if sigma_r >= 1e-6
            else None
        ),
        memory_beats_self_copy=(
            "Assumption 6: delta_M > 2 delta_C" if not cfg.delta_m > 2 * cfg.delta_c else None
        ),
        lemma4_margins=None if lem4.holds else f"m_C = {lem4.m_c:.4g}, m_C+S = {lem4.m_cs:.4g}",
    )


# ---- Proposition 1: eta* --------------------------------------------------------------------------------


def _kappa_index(name: str) -> int:
    m = reduced_model()
    return m.state.index(m.kappa[("shared", name)])


def _drift_of_q(config, lr, step: int):
    """-dL/dkappa on the shared directions (theta_S, theta_C, e_r) at step 0 or 1 (one step at ``lr``).

    The velocity at unit lr_kq is -dL/dkappa_O / |O|, and the shared orbits have |O| = 1.
    """
    p = reduced_params(resolve_config(config)).replace(lr_kq=jnp.asarray(lr, jnp.float64))
    x = reduced_initial_state(p)
    if step == 1:
        x, _ = reduced_step(x, p)
    elif step != 0:
        raise ValueError("step must be 0 or 1")
    p = p.replace(lr_kq=jnp.asarray(1.0, jnp.float64))
    velocity, _ = reduced_velocity_jit(x, p)
    velocity = np.asarray(velocity)
    return {name: float(velocity[_kappa_index(name)]) for name in ("thS", "thC", "er")}


@requires_float64
def shared_direction_gradient(config=None, *, lr=None, step: int = 1) -> float:
    """theta_C^T (-grad_{W_KQ} L) phi(r) at step 0 or 1 (one step at ``lr``, default the config's lr_kq)."""
    cfg = resolve_config(config)
    return _drift_of_q(cfg, cfg.lr_kq if lr is None else lr, step)["thC"]


@requires_float64
def eta_star(config=None, *, lr_max: float = 100.0, grid: int = 200, xtol: float = 1e-13) -> float:
    """Proposition 1's eta*: the smallest learning rate at which the shared-direction gradient
    theta_C^T(-grad L)phi(r) at t = 1 is no longer positive (root of the reduced one-step map).

    A log-spaced scan of ``grid`` rates in [1e-3, lr_max] brackets the first sign change; Brent's method
    refines it to ``xtol``. Raises ValueError if the gradient is not positive at t = 0 or never flips below
    lr_max.
    """
    cfg = resolve_config(config)
    if shared_direction_gradient(cfg, step=0) <= 0:
        raise ValueError(
            "the shared-direction gradient is not positive at t = 0: Proposition 1 does not apply"
        )
    f = lambda lr: shared_direction_gradient(cfg, lr=lr)
    rates = np.geomspace(1e-3, lr_max, grid)
    previous = rates[0]
    if f(previous) <= 0:
        raise ValueError("the gradient already flips at the smallest scanned learning rate (1e-3)")
    for lr in rates[1:]:
        if f(lr) <= 0:
            return float(scipy.optimize.brentq(f, previous, lr, xtol=xtol, rtol=4 * np.finfo(float).eps))
        previous = lr
    raise ValueError(f"the shared-direction gradient at t = 1 stays positive up to lr = {lr_max}")


# ---- Proposition 2: S points strengthen the push back ------------------------------------------------------


def _gap_push(config, lr):
    """(phi(c*) - phi(s*))^T (-grad_{W_KQ} L) phi(r) at t = 0 and t = 1: the drift of the probe's score gap
    u(c*) - u(s*) = (kappa_thC - kappa_thS) / sqrt 2 (negative = pushed back toward the subject)."""
    return tuple(
        (d["thC"] - d["thS"]) * float(np.sqrt(0.5)) for d in (_drift_of_q(config, lr, t) for t in (0, 1))
    )


@dataclasses.dataclass(frozen=True)
class Proposition2:
    """Drift of the probe's context-vs-subject score gap at t = 0 and t = 1 (one step at ``lr``), without
    and with S points. Negative drift = attention pushed back from the context toward the subject."""

    lr: float
    gap_push_without: tuple[float, float]
    gap_push_with: tuple[float, float]

    @property
    def holds(self) -> bool:
        """S points make the drift smaller at t = 0 and at t = 1 (a stronger push back toward the subject)."""
        return all(w < wo for w, wo in zip(self.gap_push_with, self.gap_push_without, strict=True))


@requires_float64
def proposition2(config=None, *, n_subject_only: int | float = 10, lr=None) -> Proposition2:
    """Compare the configuration without S points and with ``n_subject_only`` memorized S points.

    ``lr`` (default: the config's lr_kq) is the learning rate of the one step. S points have no context:
    their gradient raises the subject's score (theta_S) and leaves theta_C alone, so the effect shows in
    the gap u(c*) - u(s*) that decides the counterfactual probe's attention.
    """
    cfg = resolve_config(config).replace(n_subject_only=0)
    with_s = _with_room(cfg, n_subject_only=n_subject_only)
    lr = cfg.lr_kq if lr is None else lr
    return Proposition2(
        lr=float(lr), gap_push_without=_gap_push(cfg, lr), gap_push_with=_gap_push(with_s, lr)
    )


def _with_room(cfg: Config, **overrides) -> Config:
    """``cfg`` with overrides, growing the vocabulary when the new points need more tokens."""
    trial = dict(cfg.to_dict(), **overrides)
    n = sum(trial[k] for k in ("n_context_critical", "n_non_context_critical", "n_subject_only"))
    n += trial["n_counterfactual_augmented"]
    trial["n_subjects"] = max(trial["n_subjects"], int(np.ceil(n)) + 1)
    trial["n_answers"] = max(trial["n_answers"], int(np.ceil(n + trial["n_counterfactual_augmented"])) + 2)
    return Config.from_mapping(trial)


# ---- Proposition 3: one step on W_V ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Proposition3:
    """One step on W_V alone (lr_kq = 0, at ``lr_v``): how much a C point's subject votes for its answer.

    ``before``/``after``: v(s)[c] - v(s)[a'] for a C point (s its subject, c its context/answer, a' an
    unused answer) at t = 0 and t = 1; ``memorized_gap``: the same gap for a C+S point's subject at t = 0,
    the yardstick of a memorized fact.
    """

    lr_v: float
    before: float
    after: float
    memorized_gap: float

    @property
    def holds(self) -> bool:
        """Proposition 3: ``after > before = 0``, i.e. C points become C+S-like."""
        return self.before == 0.0 and self.after > self.before


@requires_float64
def proposition3(config=None, *, lr_v: float = 1.0) -> Proposition3:
    """One step on W_V alone (lr_kq = 0) from the pretrained state (:class:`Proposition3`)."""
    cfg = resolve_config(config).replace(lr_kq=0.0, lr_v=lr_v)
    params = reduced_params(cfg)
    x0 = reduced_initial_state(params)
    x1, _ = reduced_step(x0, params)
    return Proposition3(
        lr_v=float(lr_v),
        before=_answer_vote(x0, params, "C"),
        after=_answer_vote(x1, params, "C"),
        memorized_gap=_answer_vote(x0, params, "CS"),
    )


def _answer_vote(x, params, cls: str) -> float:
    """v(s)[c] - v(s)[a'] of class ``cls``'s point at reduced state ``x``: its subject's value logit for its
    own context/answer minus that for an unused answer."""
    forward = _forward(x, symbol_values(params), (cls,)).classes[cls]
    m = reduced_model()
    roles = list(m.logit_expr[cls])
    s_row = forward.dz_dsigma[list(m.attention_sym[cls]).index("s")]
    return float(s_row[roles.index(("answer", ("same", "c")))] - s_row[roles.index(("answer", ("nA",)))])


# ---- Theorem 1 ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Theorem1:
    """M_C at t = 0, 1, 2 of exact GD at learning rate ``lr`` (W_KQ only, as the configuration's lr_v)."""

    lr: float
    context_reliance: tuple[float, float, float]  # M_C(0), M_C(1), M_C(2)

    @property
    def holds(self) -> bool:
        """Theorem 1: M_C(1) > M_C(0) and M_C(1) > M_C(2) (one step overshoots, the next falls back)."""
        mc = self.context_reliance
        return mc[1] > mc[0] and mc[1] > mc[2]


@requires_float64
def theorem1(config=None, *, lr=None) -> Theorem1:
    """Theorem 1's check at learning rate ``lr`` (:class:`Theorem1`).

    The default is 1.05 eta*: just past the flip, where Proposition 1's t = 1 gradient is strictly negative
    (at eta* itself M_C(2) - M_C(1) is second order and can round either way).
    """
    cfg = resolve_config(config)
    lr = 1.05 * eta_star(cfg) if lr is None else lr
    params = reduced_params(cfg.replace(lr_kq=lr))
    x = reduced_initial_state(params)
    mc = []
    for _ in range(3):
        mc.append(float(reduced_metrics_jit(x, params)["context_reliance"]))
        x, _ = reduced_step(x, params)
    return Theorem1(lr=lr, context_reliance=tuple(mc))


__all__ = [
    "Assumptions",
    "Lemma3ValueLogits",
    "Lemma4Margins",
    "Lemma4Values",
    "Proposition2",
    "Proposition3",
    "Theorem1",
    "check_assumptions",
    "eta_star",
    "lemma3_value_logits",
    "lemma4_margins",
    "lemma4_values",
    "proposition2",
    "proposition3",
    "shared_direction_gradient",
    "theorem1",
]
