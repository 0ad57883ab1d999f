"""The sympy model of :mod:`._symbolic` compiled to JAX: the forward pass of every class (and the
probe), the exact loss gradient in every reduced coordinate (chain rule over sympy derivatives) and the
metrics of a reduced state. :mod:`._engine` steps it."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from ._symbolic import CLASSES, reduced_model


def _lambdify(inputs, outputs):
    # The jax printer emits jax.numpy calls; the expressions here are small (one class at a time).
    return sp.lambdify(list(inputs), list(outputs), modules="jax", cse=True)


_GROUPS = (*CLASSES, "probe")
_BASE = ("n_C", "n_CS", "n_S", "n_AUG", "K_A", "K_S", "o_c", "o_r")


@dataclasses.dataclass(frozen=True)
class _Group:
    """The sympy derivatives of one class's (or the probe's) forward pass, as arrays and small functions.

    Logits are bilinear in attention and Delta W_V: ``z_t = sum_y sigma_y (B[y, t] + C[y, t, :] . w)`` with
    ``B = dz/dsigma at w = 0`` (a function of the parameters) and ``C = d^2 z / dsigma dw`` (numbers).
    Scores are linear in kappa: ``u = S kappa``.
    """

    roles: tuple
    slots: tuple
    b_fn: object  # params -> (Y, R)
    c: np.ndarray  # (Y, R, W)
    s: np.ndarray  # (Y, K)
    attention_fn: object  # (u, shift) -> sigma
    jacobian_fn: object  # sigma -> J (Y, Y)
    mult_fn: object  # params -> (R,)
    loss_fn: object | None  # (z, shift, params) -> [loss, dloss/dz_t ...]
    margin_fn: object | None  # (z, vc, vs, shift, params) -> margin
    target: int | None


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


@functools.lru_cache(maxsize=1)
def _compiled() -> dict:
    m = reduced_model()
    p = m.params
    base = [p[k] for k in _BASE]
    lam = [p["lambda_C"], p["lambda_M"]]
    w_syms = list(m.w.values())
    k_syms = list(m.kappa.values())
    zero_w = dict.fromkeys(w_syms, 0)
    w_index = {w_: i for i, w_ in enumerate(w_syms)}
    groups = {}
    for g in _GROUPS:
        if g == "probe":
            roles = tuple(m.probe_logit_expr)
            z = [m.probe_logit_expr[r] for r in roles]
            mults = [m.probe_multiplicity[r] for r in roles]
        else:
            roles = tuple(m.logit_expr[g])
            z = [m.logit_expr[g][r] for r in roles]
            mults = [m.multiplicity[g][r] for r in roles]
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
        loss_fn = margin_fn = target = None
        if g != "probe":
            zs = [m.logit_sym[g][r] for r in roles]
            loss_fn = _lambdify(
                zs + [m.logit_shift[g]] + base,
                [m.class_loss[g]] + [m.loss_grad_expr[g][r] for r in roles],
            )
            target = roles.index(m.targets[g])
            if g in m.margin:
                expr, vc, vs = m.margin[g]
                margin_fn = _lambdify(
                    zs + [vc[r] for r in roles] + [vs[r] for r in roles] + [m.logit_shift[g]] + base, [expr]
                )
        groups[g] = _Group(
            roles=roles,
            slots=slots,
            b_fn=_lambdify(base + lam, b_exprs),
            c=c_array.reshape(len(slots), len(roles), len(w_syms)),
            s=np.array([float(e) for e in s_exprs], dtype=np.float64).reshape(len(slots), len(k_syms)),
            attention_fn=_lambdify(u + [m.att_shift[g]], [m.attention_expr[g][y] for y in slots]),
            jacobian_fn=_lambdify(sig, jac),
            mult_fn=_lambdify(base, mults),
            loss_fn=loss_fn,
            margin_fn=margin_fn,
            target=target,
        )
    class_weight_fn = _lambdify(base, [sp.diff(m.loss, m.class_loss_sym[k]) for k in CLASSES])
    orbit_fn = _lambdify(base, [m.orbit_size[s_] for s_ in m.state])
    lam_fn = _lambdify([p[k] for k in ("K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m")], [m.lam_c, m.lam_m])
    return dict(
        groups=groups,
        class_weight_fn=class_weight_fn,
        orbit_fn=orbit_fn,
        lam_fn=lam_fn,
        n_kappa=len(k_syms),
        n_state=len(m.state),
    )


def _as_f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def _vector(values):
    return jnp.stack([_as_f64(v) for v in values])


def _forward(state, params, groups=_GROUPS):
    """Attention, role logits, class losses and dloss/dz for each group (the forward pass and its sympy
    derivatives evaluated at one reduced state)."""
    c = _compiled()
    kappa, w = state[: c["n_kappa"]], state[c["n_kappa"] :]
    base = [_as_f64(params[k]) for k in _BASE]
    lam = list(c["lam_fn"](*[_as_f64(params[k]) for k in ("K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m")]))
    out = {}
    for g in groups:
        grp = c["groups"][g]
        u = jnp.asarray(grp.s) @ kappa
        sigma = _vector(grp.attention_fn(*u, jnp.max(u)))
        # dz/dsigma (Y, R) = B + C . w : the value logits v(y) of each input token y, by role.
        dz_dsigma = _vector(grp.b_fn(*base, *lam)).reshape(grp.c.shape[:2]) + jnp.asarray(grp.c) @ w
        z = sigma @ dz_dsigma
        mult = _vector(grp.mult_fn(*base))
        res = {"sigma": sigma, "u": u, "dz_dsigma": dz_dsigma, "z": z, "mult": mult}
        if grp.loss_fn is not None:
            # Shift = the largest logit among roles that have tokens (the loss does not depend on it).
            shift = jnp.max(jnp.where(mult > 0, z, -jnp.inf))
            values = _vector(grp.loss_fn(*z, shift, *base))
            res.update(loss=values[0], dloss_dz=values[1:], shift=shift)
        out[g] = res
    out["class_weight"] = _vector(c["class_weight_fn"](*base))
    out["base"] = base
    return out


def reduced_loss_and_gradient(state, params):
    """Training loss and its gradient dL/dtheta_O in every reduced coordinate (chain rule, sympy pieces)."""
    c = _compiled()
    fw = _forward(state, params, CLASSES)
    grad_k = jnp.zeros((c["n_kappa"],), dtype=jnp.float64)
    grad_w = jnp.zeros((c["n_state"] - c["n_kappa"],), dtype=jnp.float64)
    loss = _as_f64(0.0)
    for i, k in enumerate(CLASSES):
        grp, f = c["groups"][k], fw[k]
        weight = fw["class_weight"][i]
        # Absent classes have weight 0; where() keeps their (irrelevant) values from leaking NaN.
        g_t = jnp.where(weight != 0, f["dloss_dz"], 0.0)
        loss = loss + jnp.where(weight != 0, weight * f["loss"], 0.0)
        grad_w = grad_w + weight * jnp.einsum("t,y,ytw->w", g_t, f["sigma"], jnp.asarray(grp.c))
        jac = _vector(grp.jacobian_fn(*f["sigma"])).reshape(len(grp.slots), len(grp.slots))
        dl_dsigma = f["dz_dsigma"] @ g_t
        grad_k = grad_k + weight * ((dl_dsigma @ jac) @ jnp.asarray(grp.s))
    return loss, jnp.concatenate([grad_k, grad_w])


def reduced_velocity(state, params):
    """The GD update direction per unit learning rate: ``-lr_ratio * dL/dtheta_O / |O|`` for every reduced
    coordinate (lr_kq for kappa, lr_v for w), and the loss. ``state - velocity`` would be one GD step; the
    gradient flow is ``d state / d t = velocity``."""
    c = _compiled()
    loss, grad = reduced_loss_and_gradient(state, params)
    orbit = _vector(c["orbit_fn"](*[_as_f64(params[k]) for k in _BASE]))
    # Per-entry gradient = dL/dtheta_O / |O|; an empty orbit (|O| = 0) never influences anything.
    safe = jnp.where(orbit == 0, 1.0, orbit)
    entry_grad = jnp.where(orbit == 0, 0.0, grad / safe)
    is_kq = jnp.arange(c["n_state"]) < c["n_kappa"]
    lr = jnp.where(is_kq, _as_f64(params["lr_kq"]), _as_f64(params["lr_v"]))
    return -lr * entry_grad, loss


def _gradient_step(state, params):
    """One exact GD step on the reduced state; returns the new state and the loss before the step."""
    velocity, loss = reduced_velocity(state, params)
    return state + velocity, loss


def reduced_metrics(state, params) -> dict:
    """The full engine's :func:`cpi_theory.metrics` computed on a reduced state."""
    c = _compiled()
    fw = _forward(state, params)
    probe = c["groups"]["probe"]
    z = dict(zip(probe.roles, [fw["probe"]["z"][i] for i in range(len(probe.roles))], strict=True))
    mult = dict(zip(probe.roles, [fw["probe"]["mult"][i] for i in range(len(probe.roles))], strict=True))
    # argmax ties go to the lowest token id, as in the full model: subjects, then training answers, then
    # c*, a*, the unused answers and r.
    subjects = ["s*", "nS"] + [(k, "s") for k in CLASSES]
    answers_before = [(k, s) for k in CLASSES for s in ("c", "a", "m") if (k, s) in z]

    def best(names):
        return jnp.max(jnp.stack([jnp.where(mult[n] > 0, z[n], -jnp.inf) for n in names]))

    lower = subjects + answers_before
    cf_acc = (z["c*"] > best(lower)) & (z["c*"] >= best(["a*", "nA", "r"]))
    par_acc = (z["a*"] > best([*lower, "c*"])) & (z["a*"] >= best(["nA", "r"]))
    sigma = dict(zip(probe.slots, [fw["probe"]["sigma"][i] for i in range(3)], strict=True))
    weights = fw["class_weight"]
    losses = jnp.stack([fw[k]["loss"] for k in CLASSES])
    out = {
        "context_reliance": jax.nn.sigmoid(z["c*"] - z["a*"]),
        "attention_context": sigma["c"],
        "attention_subject": sigma["s"],
        "counterfactual_accuracy": cf_acc.astype(jnp.float64),
        "parametric_accuracy": par_acc.astype(jnp.float64),
        "loss": jnp.sum(jnp.where(weights != 0, weights * losses, 0.0)),
    }
    present = jnp.stack([_as_f64(params[f"n_{k}"]) != 0 for k in CLASSES])
    nan = _as_f64(jnp.nan)

    def margin(k):
        grp, f = c["groups"][k], fw[k]
        if grp.margin_fn is None:
            return nan
        vc, vs = f["dz_dsigma"][grp.slots.index("c")], f["dz_dsigma"][grp.slots.index("s")]
        return _as_f64(grp.margin_fn(*f["z"], *vc, *vs, f["shift"], *fw["base"])[0])

    def slot(k, y):
        grp = c["groups"][k]
        return fw[k]["sigma"][grp.slots.index(y)] if y in grp.slots else _as_f64(0.0)

    def per_class(values):
        return jnp.where(present, jnp.stack(values), nan)

    out["per_class"] = {
        "loss": per_class([fw[k]["loss"] for k in CLASSES]),
        "attention_context": per_class([slot(k, "c") for k in CLASSES]),
        "attention_subject": per_class([slot(k, "s") for k in CLASSES]),
        "margin": per_class([margin(k) for k in CLASSES]),
    }
    return out


# Jitted once, shared by the paper, flow and analysis modules (params are traced: no recompilation per
# configuration).
reduced_metrics_jit = jax.jit(reduced_metrics)
reduced_velocity_jit = jax.jit(reduced_velocity)
