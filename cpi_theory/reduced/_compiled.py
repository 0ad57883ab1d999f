"""The sympy model of :mod:`._symbolic` compiled to JAX: the forward pass of every class (and the
probe), the exact loss gradient in every reduced coordinate (chain rule over sympy derivatives) and the
metrics of a reduced state. :mod:`._engine` steps it."""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from .._precision import requires_float64
from ..config._params import ToyParams
from ._inputs import symbol_values
from ._symbolic import CLASSES, ReducedModel, reduced_model


def _lambdify(inputs, outputs):
    # The jax printer emits jax.numpy calls; the expressions here are small (one class at a time).
    return sp.lambdify(list(inputs), list(outputs), modules="jax", cse=True)


_GROUPS = (*CLASSES, "probe")
_BASE = ("n_C", "n_CS", "n_S", "n_AUG", "K_A", "K_S", "o_c", "o_r")
# The parameters Lemma 3's two table entries lambda_C, lambda_M depend on.
_LEMMA3 = ("K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m")


@dataclasses.dataclass(frozen=True)
class CompiledGroup:
    """The sympy derivatives of one class's (or the probe's) forward pass, as arrays and small functions.

    Logits are bilinear in attention and Delta W_V: ``z_t = sum_y sigma_y (B[y, t] + C[y, t, :] . w)`` with
    ``B = dz/dsigma at w = 0`` (a function of the parameters) and ``C = d^2 z / dsigma dw`` (numbers).
    Scores are linear in kappa: ``u = S kappa``. The probe has no loss, margin or target (None).
    """

    roles: tuple
    slots: tuple
    b_fn: Callable  # (base, lambda_C, lambda_M) -> B flattened (Y * R)
    c: np.ndarray  # (Y, R, W)
    s: np.ndarray  # (Y, K)
    attention_fn: Callable  # (u, shift) -> sigma
    jacobian_fn: Callable  # sigma -> J flattened (Y * Y)
    mult_fn: Callable  # base -> (R,)
    loss_fn: Callable | None  # (z, shift, base) -> [loss, dloss/dz_t ...]
    margin_fn: Callable | None  # (z, vc, vs, shift, base) -> [margin]
    target: int | None


@dataclasses.dataclass(frozen=True)
class CompiledReducedModel:
    """The reduced model compiled once (:func:`_compiled`): per group its :class:`CompiledGroup`, and the
    functions of the parameters that do not belong to one group."""

    groups: dict[str, CompiledGroup]  # CLASSES and "probe"
    class_weight_fn: Callable  # base -> dL/dloss_k, in CLASSES order
    orbit_fn: Callable  # base -> |O| of every state coordinate
    lam_fn: Callable  # the _LEMMA3 parameters -> (lambda_C, lambda_M)
    n_kappa: int  # the state is kappa (n_kappa coordinates) then w
    n_state: int


def _linear_coefficients(expr, index: dict) -> np.ndarray:
    """d expr / d w for an expression affine in the w symbols (coefficients must be numbers)."""
    out = np.zeros(len(index))
    for term in sp.Add.make_args(expr):
        coeff, dep = term.as_independent(*index)
        if dep == 1:
            continue
        if dep not in index or coeff.free_symbols:
            raise AssertionError(f"logits must be affine in Delta W_V with numeric coefficients; got {term}")
        out[index[dep]] += float(coeff)
    return out


def _role_logits(m: ReducedModel, g: str) -> tuple[tuple, list, list]:
    """The group's roles, their logit expressions and their multiplicities."""
    if g == "probe":
        roles = tuple(m.probe_logit_expr)
        return roles, [m.probe_logit_expr[r] for r in roles], [m.probe_multiplicity[r] for r in roles]
    roles = tuple(m.logit_expr[g])
    return roles, [m.logit_expr[g][r] for r in roles], [m.multiplicity[g][r] for r in roles]


def _loss_and_margin(m: ReducedModel, k: str, roles: tuple, base: list) -> dict:
    """A class's loss (and dloss/dz) function, its margin function (classes with a context) and its
    target role's index."""
    zs = [m.logit_sym[k][r] for r in roles]
    loss_fn = _lambdify(
        zs + [m.logit_shift[k]] + base,
        [m.class_loss[k]] + [m.loss_grad_expr[k][r] for r in roles],
    )
    margin_fn = None
    if k in m.margin:
        expr, vc, vs = m.margin[k]
        margin_fn = _lambdify(
            zs + [vc[r] for r in roles] + [vs[r] for r in roles] + [m.logit_shift[k]] + base, [expr]
        )
    return dict(loss_fn=loss_fn, margin_fn=margin_fn, target=roles.index(m.targets[k]))


def _compile_group(m: ReducedModel, g: str, base: list, lam: list) -> CompiledGroup:
    w_syms = list(m.w.values())
    k_syms = list(m.kappa.values())
    zero_w = dict.fromkeys(w_syms, 0)
    w_index = {w_: i for i, w_ in enumerate(w_syms)}
    roles, z, mults = _role_logits(m, g)
    slots = tuple(m.attention_sym[g])
    sig = [m.attention_sym[g][y] for y in slots]
    for expr in z:  # z is homogeneous of degree 1 in sigma: no term escapes the tensors below
        assert sp.expand(expr.xreplace(dict.fromkeys(sig, 0))) == 0
    dz = [[sp.expand(sp.diff(expr, s_)) for expr in z] for s_ in sig]
    b_exprs = [e.xreplace(zero_w) for row in dz for e in row]
    c_array = np.stack([_linear_coefficients(e, w_index) for row in dz for e in row])
    s_exprs = [sp.diff(m.score_expr[g][y], k_) for y in slots for k_ in k_syms]
    u = [m.score_sym[g][y] for y in slots]
    jac = [m.attention_jacobian_expr[(g, y, v)] for y in slots for v in slots]
    loss = (
        dict(loss_fn=None, margin_fn=None, target=None)
        if g == "probe"
        else _loss_and_margin(m, g, roles, base)
    )
    return CompiledGroup(
        roles=roles,
        slots=slots,
        b_fn=_lambdify(base + lam, b_exprs),
        c=c_array.reshape(len(slots), len(roles), len(w_syms)),
        s=np.array([float(e) for e in s_exprs], dtype=np.float64).reshape(len(slots), len(k_syms)),
        attention_fn=_lambdify(u + [m.att_shift[g]], [m.attention_expr[g][y] for y in slots]),
        jacobian_fn=_lambdify(sig, jac),
        mult_fn=_lambdify(base, mults),
        **loss,
    )


@functools.lru_cache(maxsize=1)
def _compiled() -> CompiledReducedModel:
    m = reduced_model()
    p = m.params
    base = [p[k] for k in _BASE]
    lam = [p["lambda_C"], p["lambda_M"]]
    return CompiledReducedModel(
        groups={g: _compile_group(m, g, base, lam) for g in _GROUPS},
        class_weight_fn=_lambdify(base, [sp.diff(m.loss, m.class_loss_sym[k]) for k in CLASSES]),
        orbit_fn=_lambdify(base, [m.orbit_size[s_] for s_ in m.state]),
        lam_fn=_lambdify([p[k] for k in _LEMMA3], [m.lam_c, m.lam_m]),
        n_kappa=len(m.kappa),
        n_state=len(m.state),
    )


def _as_f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def _vector(values):
    return jnp.stack([_as_f64(v) for v in values])


@dataclasses.dataclass(frozen=True)
class GroupForward:
    """One group's forward pass at a reduced state (arrays over its slots Y and roles R)."""

    sigma: jax.Array  # (Y,) attention
    u: jax.Array  # (Y,) attention scores
    dz_dsigma: jax.Array  # (Y, R): the value logits v(y) of each input token y, by role
    z: jax.Array  # (R,) role logits
    mult: jax.Array  # (R,) number of tokens of each role
    loss: jax.Array | None = None  # the class loss (None for the probe)
    dloss_dz: jax.Array | None = None  # (R,) its derivative in each role logit
    shift: jax.Array | None = None  # the softmax shift the loss was evaluated at


@dataclasses.dataclass(frozen=True)
class ForwardPass:
    """The forward pass of the requested groups at one reduced state, with the class weights of the loss
    and the base parameters as float64 arrays (in ``_BASE`` order)."""

    classes: dict[str, GroupForward]  # requested classes, by CLASSES name
    probe: GroupForward | None  # None unless requested
    class_weight: jax.Array  # (4,) dL/dloss_k in CLASSES order
    base: list


def _forward(state, params, groups=_GROUPS) -> ForwardPass:
    """Attention, role logits, class losses and dloss/dz for each group (the forward pass and its sympy
    derivatives evaluated at one reduced state)."""
    c = _compiled()
    kappa, w = state[: c.n_kappa], state[c.n_kappa :]
    base = [_as_f64(params[k]) for k in _BASE]
    lam = list(c.lam_fn(*[_as_f64(params[k]) for k in _LEMMA3]))
    classes, probe = {}, None
    for g in groups:
        grp = c.groups[g]
        u = jnp.asarray(grp.s) @ kappa
        sigma = _vector(grp.attention_fn(*u, jnp.max(u)))
        # dz/dsigma (Y, R) = B + C . w : the value logits v(y) of each input token y, by role.
        dz_dsigma = _vector(grp.b_fn(*base, *lam)).reshape(grp.c.shape[:2]) + jnp.asarray(grp.c) @ w
        z = sigma @ dz_dsigma
        mult = _vector(grp.mult_fn(*base))
        if grp.loss_fn is None:
            probe = GroupForward(sigma=sigma, u=u, dz_dsigma=dz_dsigma, z=z, mult=mult)
            continue
        # Shift = the largest logit among roles that have tokens (the loss does not depend on it).
        shift = jnp.max(jnp.where(mult > 0, z, -jnp.inf))
        values = _vector(grp.loss_fn(*z, shift, *base))
        classes[g] = GroupForward(
            sigma=sigma,
            u=u,
            dz_dsigma=dz_dsigma,
            z=z,
            mult=mult,
            loss=values[0],
            dloss_dz=values[1:],
            shift=shift,
        )
    class_weight = _vector(c.class_weight_fn(*base))
    return ForwardPass(classes=classes, probe=probe, class_weight=class_weight, base=base)


@requires_float64
def reduced_loss_and_gradient(state, params: ToyParams):
    """Training loss and its gradient dL/dtheta_O in every reduced coordinate (chain rule, sympy pieces)."""
    c = _compiled()
    fw = _forward(state, symbol_values(params), CLASSES)
    grad_k = jnp.zeros((c.n_kappa,), dtype=jnp.float64)
    grad_w = jnp.zeros((c.n_state - c.n_kappa,), dtype=jnp.float64)
    loss = _as_f64(0.0)
    for i, k in enumerate(CLASSES):
        grp, f = c.groups[k], fw.classes[k]
        weight = fw.class_weight[i]
        # Absent classes have weight 0; where() keeps their (irrelevant) values from leaking NaN.
        g_t = jnp.where(weight != 0, f.dloss_dz, 0.0)
        loss = loss + jnp.where(weight != 0, weight * f.loss, 0.0)
        grad_w = grad_w + weight * jnp.einsum("t,y,ytw->w", g_t, f.sigma, jnp.asarray(grp.c))
        jac = _vector(grp.jacobian_fn(*f.sigma)).reshape(len(grp.slots), len(grp.slots))
        dl_dsigma = f.dz_dsigma @ g_t
        grad_k = grad_k + weight * ((dl_dsigma @ jac) @ jnp.asarray(grp.s))
    return loss, jnp.concatenate([grad_k, grad_w])


@requires_float64
def reduced_velocity(state, params: ToyParams):
    """The GD update direction per unit learning rate: ``-lr_ratio * dL/dtheta_O / |O|`` for every reduced
    coordinate (lr_kq for kappa, lr_v for w), and the loss. ``state - velocity`` would be one GD step; the
    gradient flow is ``d state / d t = velocity``."""
    c = _compiled()
    loss, grad = reduced_loss_and_gradient(state, params)
    params = symbol_values(params)
    orbit = _vector(c.orbit_fn(*[_as_f64(params[k]) for k in _BASE]))
    # Per-entry gradient = dL/dtheta_O / |O|; an empty orbit (|O| = 0) never influences anything.
    safe = jnp.where(orbit == 0, 1.0, orbit)
    entry_grad = jnp.where(orbit == 0, 0.0, grad / safe)
    is_kq = jnp.arange(c.n_state) < c.n_kappa
    lr = jnp.where(is_kq, _as_f64(params["lr_kq"]), _as_f64(params["lr_v"]))
    return -lr * entry_grad, loss


def _gradient_step(state, params):
    """One exact GD step on the reduced state; returns the new state and the loss before the step."""
    velocity, loss = reduced_velocity(state, params)
    return state + velocity, loss


def _probe_metrics(c: CompiledReducedModel, fw: ForwardPass) -> dict:
    """The counterfactual probe's metrics and the training loss (the full model's top-level metrics)."""
    probe = c.groups["probe"]
    z = dict(zip(probe.roles, [fw.probe.z[i] for i in range(len(probe.roles))], strict=True))
    mult = dict(zip(probe.roles, [fw.probe.mult[i] for i in range(len(probe.roles))], strict=True))
    # argmax ties go to the lowest token id, as in the full model: subjects, then training answers, then
    # c*, a*, the unused answers and r.
    subjects = ["s*", "nS"] + [(k, "s") for k in CLASSES]
    answers_before = [(k, s) for k in CLASSES for s in ("c", "a", "m") if (k, s) in z]

    def best(names):
        return jnp.max(jnp.stack([jnp.where(mult[n] > 0, z[n], -jnp.inf) for n in names]))

    lower = subjects + answers_before
    cf_acc = (z["c*"] > best(lower)) & (z["c*"] >= best(["a*", "nA", "r"]))
    par_acc = (z["a*"] > best([*lower, "c*"])) & (z["a*"] >= best(["nA", "r"]))
    sigma = dict(zip(probe.slots, [fw.probe.sigma[i] for i in range(3)], strict=True))
    # The closed-book query [s*, r] of the same fact: attention over the probe's s and r scores only, and
    # logits linear in it (z = sigma @ dz/dsigma with sigma_c = 0); recall p(a*) over every token.
    s_i, r_i = probe.slots.index("s"), probe.slots.index("r")
    book_sigma = jax.nn.softmax(jnp.stack([fw.probe.u[s_i], fw.probe.u[r_i]]))
    book_z = book_sigma @ jnp.stack([fw.probe.dz_dsigma[s_i], fw.probe.dz_dsigma[r_i]])
    book = dict(zip(probe.roles, [book_z[i] for i in range(len(probe.roles))], strict=True))
    shift = jnp.max(jnp.where(fw.probe.mult > 0, book_z, -jnp.inf))
    norm = jnp.sum(jnp.where(fw.probe.mult > 0, fw.probe.mult * jnp.exp(book_z - shift), 0.0))

    def best_book(names):
        return jnp.max(jnp.stack([jnp.where(mult[n] > 0, book[n], -jnp.inf) for n in names]))

    memory = (book["a*"] > best_book([*lower, "c*"])) & (book["a*"] >= best_book(["nA", "r"]))
    weights = fw.class_weight
    losses = jnp.stack([fw.classes[k].loss for k in CLASSES])
    return {
        "context_reliance": jax.nn.sigmoid(z["c*"] - z["a*"]),
        "attention_context": sigma["c"],
        "attention_subject": sigma["s"],
        "counterfactual_accuracy": cf_acc.astype(jnp.float64),
        "parametric_accuracy": par_acc.astype(jnp.float64),
        "memory_recall": jnp.exp(book["a*"] - shift) / norm,
        "memory_accuracy": memory.astype(jnp.float64),
        "loss": jnp.sum(jnp.where(weights != 0, weights * losses, 0.0)),
    }


def _per_class_metrics(c: CompiledReducedModel, fw: ForwardPass, params) -> dict:
    """Per-class loss, attention on context and subject, and Lemma 2's margin (NaN for absent classes and
    for classes without a context's margin), in CLASSES order."""
    present = jnp.stack([_as_f64(params[f"n_{k}"]) != 0 for k in CLASSES])
    nan = _as_f64(jnp.nan)

    def margin(k):
        grp, f = c.groups[k], fw.classes[k]
        if grp.margin_fn is None:
            return nan
        vc, vs = f.dz_dsigma[grp.slots.index("c")], f.dz_dsigma[grp.slots.index("s")]
        return _as_f64(grp.margin_fn(*f.z, *vc, *vs, f.shift, *fw.base)[0])

    def slot(k, y):
        grp = c.groups[k]
        return fw.classes[k].sigma[grp.slots.index(y)] if y in grp.slots else _as_f64(0.0)

    def per_class(values):
        return jnp.where(present, jnp.stack(values), nan)

    return {
        "loss": per_class([fw.classes[k].loss for k in CLASSES]),
        "attention_context": per_class([slot(k, "c") for k in CLASSES]),
        "attention_subject": per_class([slot(k, "s") for k in CLASSES]),
        "margin": per_class([margin(k) for k in CLASSES]),
    }


@requires_float64
def reduced_metrics(state, params: ToyParams) -> dict:
    """The full engine's :func:`cpi_theory.metrics` computed on a reduced state."""
    c = _compiled()
    params = symbol_values(params)
    fw = _forward(state, params)
    out = _probe_metrics(c, fw)
    out["per_class"] = _per_class_metrics(c, fw, params)
    return out


# Jitted once, shared by the paper, flow and analysis modules (params are traced: no recompilation per
# configuration).
reduced_metrics_jit = jax.jit(reduced_metrics)
reduced_velocity_jit = jax.jit(reduced_velocity)
