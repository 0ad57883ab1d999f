"""Code generation: the minimal exact reduced state of each regime and its fused JAX update.

The general reduced model (:mod:`._symbolic`) has 166 coordinates in every configuration. Most of them
never move in a given *regime*: with W_V frozen (lr_v = 0) no ``w`` coordinate moves; without S points (or
augmented points) the coordinates of that class never enter. This module derives, from the sympy model
alone, which coordinates move in each regime (a coordinate moves iff its loss gradient is not identically
zero there) and emits one straight-line JAX function per regime (``sympy.cse`` over each stage, no
coefficient tensors) that computes the exact GD update of the moving coordinates:

    velocity_<regime>(x, p) -> (v, loss):  x_next = x + lr_scale * v  is one GD step at rates lr_kq, lr_v
    probe_<regime>(x, p) -> (M_C, magnitude): the counterfactual probe
    probe_gap_<regime>(x, p) -> z_c* - z_a*: the probe's logit gap (M_C = sigmoid of it)

The gradient is derived here by sympy, stage by stage (reverse mode written out symbolically): class losses
-> role logits z (bilinear in attention and W_V) -> attention sigma (softmax Jacobian) -> scores u (linear in
kappa). The per-entry gradient of an orbit O is dL/dtheta_O / |O|; the loss gradient of a role logit is
written as ``mult_t * P_t - [t = target]`` with ``P_t`` the probability of *one* token of role ``t``, so the
orbit sizes cancel symbolically and no update divides by a class size (a class of size 0, or the "other
points of my class" of a class of size 1, stays exact, and derivatives in the class sizes hold there too).

Regimes: ``value`` (lr_v != 0) or ``frozen``, with or without S points, with or without augmented points;
C and C+S are always present as symbols (either may be 0 numerically). ``python -m
cpi_theory.reduced._codegen`` rewrites ``_generated.py``; a test checks that the committed file is what this
module emits.
"""

import dataclasses
import functools
import itertools
import pathlib

import sympy as sp
from sympy.printing.numpy import JaxPrinter

from ._symbolic import CLASSES, reduced_model

GENERATED = pathlib.Path(__file__).with_name("_generated.py")
SQRT2 = sp.Symbol("SQRT2", positive=True)


@dataclasses.dataclass(frozen=True)
class Regime:
    """Which coordinates can move: W_V trained (lr_v != 0), S points present, augmented points present."""

    value_trained: bool
    has_s: bool
    has_aug: bool

    @property
    def name(self) -> str:
        return "_".join(
            ["value" if self.value_trained else "frozen"]
            + (["S"] if self.has_s else [])
            + (["AUG"] if self.has_aug else [])
        )

    @property
    def classes(self) -> tuple[str, ...]:
        present = {"C": True, "CS": True, "S": self.has_s, "AUG": self.has_aug}
        return tuple(k for k in CLASSES if present[k])

    def covers(self, other: "Regime") -> bool:
        """Whether this regime's dynamics hold for ``other``'s configurations too (it has every class and
        pathway ``other`` has)."""
        return all(
            a or not b
            for a, b in zip(
                (self.value_trained, self.has_s, self.has_aug),
                (other.value_trained, other.has_s, other.has_aug),
                strict=True,
            )
        )


REGIMES = tuple(Regime(*flags) for flags in itertools.product((False, True), repeat=3))


class _Printer(JaxPrinter):
    """jnp code; x**-1 as a division and small integer powers as products (cheaper than pow)."""

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.as_base_exp()
        if exponent == -1:
            return f"1.0 / ({self._print(base)})"
        if exponent == 2:
            return f"({self._print(base)}) * ({self._print(base)})"
        if exponent == -2:
            return f"1.0 / (({self._print(base)}) * ({self._print(base)}))"
        return super()._print_Pow(expr, rational=rational)


class _Program:
    """Named assignments in order; each stage is cse'd on its own."""

    def __init__(self):
        self.lines: list[str] = []
        self._printer = _Printer()
        self._count = itertools.count()

    def print(self, expr) -> str:
        text = self._printer.doprint(expr)
        return text.replace("jax.numpy.", "jnp.")

    def comment(self, text: str) -> None:
        self.lines.append(f"    # {text}")

    def assign(self, pairs: list[tuple[sp.Symbol, sp.Expr]], cse: bool = True) -> None:
        names = [lhs for lhs, _ in pairs]
        exprs = [rhs for _, rhs in pairs]
        if cse:
            tmp = (sp.Symbol(f"t{next(self._count)}") for _ in itertools.count())
            shared, exprs = sp.cse(exprs, symbols=tmp, optimizations="basic")
            for lhs, rhs in shared:
                self.lines.append(f"    {lhs} = {self.print(rhs)}")
        for lhs, rhs in zip(names, exprs, strict=True):
            self.lines.append(f"    {lhs} = {self.print(rhs)}")

    def raw(self, text: str) -> None:
        self.lines.append(f"    {text}")


def _float_constants(expr):
    """sqrt(2) -> SQRT2 (a float constant of the generated module): keeps every literal a Python float."""
    return expr.xreplace({sp.sqrt(2): SQRT2, 1 / sp.sqrt(2): SQRT2 / 2})


@functools.cache
def _moving(regime: Regime) -> tuple[sp.Symbol, ...]:
    """The coordinates whose gradient is not identically zero in ``regime`` (in the general state's order)."""
    return tuple(s for s in reduced_model().state if _gradient(regime, s) != 0)


@functools.cache
def _derivation(regime: Regime):
    """Stage symbols and the per-entry gradient of every coordinate, in ``regime``."""
    m = reduced_model()
    p = m.params
    classes = regime.classes
    zero = {p["n_S"]: sp.Integer(0)} if not regime.has_s else {}
    if not regime.has_aug:
        zero[p["n_AUG"]] = sp.Integer(0)
    if not regime.value_trained:
        zero.update(dict.fromkeys(m.w.values(), sp.Integer(0)))
    # Per-token probability symbols: dloss_k/dz_t = mult_t * P_t - [t = target].
    prob = {k: {t: sp.Symbol(f"P_{k}_{_tname(t)}", real=True) for t in m.logit_sym[k]} for k in classes}
    grad_z = {
        k: {
            t: m.multiplicity[k][t].xreplace(zero) * prob[k][t] - (1 if t == m.targets[k] else 0)
            for t in m.logit_sym[k]
        }
        for k in classes
    }
    # dL_k/dsigma_y and dL_k/du_v as stage symbols (shared by every kappa coordinate).
    dl_dsigma = {k: {y: sp.Symbol(f"dsigma_{k}_{y}", real=True) for y in m.attention_sym[k]} for k in classes}
    dl_du = {k: {v: sp.Symbol(f"du_{k}_{v}", real=True) for v in m.score_sym[k]} for k in classes}
    dl_dsigma_expr = {
        k: {
            y: sum(
                grad_z[k][t] * sp.diff(z.xreplace(zero), m.attention_sym[k][y])
                for t, z in m.logit_expr[k].items()
            )
            for y in m.attention_sym[k]
        }
        for k in classes
    }
    dl_du_expr = {
        k: {
            v: sum(dl_dsigma[k][y] * m.attention_jacobian_expr[(k, y, v)] for y in m.attention_sym[k])
            for v in m.score_sym[k]
        }
        for k in classes
    }
    class_weight = {k: sp.diff(m.loss, m.class_loss_sym[k]).xreplace(zero) for k in classes}
    return dict(
        classes=classes,
        zero=zero,
        prob=prob,
        grad_z=grad_z,
        dl_dsigma=dl_dsigma,
        dl_du=dl_du,
        dl_dsigma_expr=dl_dsigma_expr,
        dl_du_expr=dl_du_expr,
        class_weight=class_weight,
    )


def _tname(t) -> str:
    return "_".join(str(x) for x in (t[1] if isinstance(t, tuple) else (t,)))


@functools.cache
def _gradient(regime: Regime, symbol: sp.Symbol) -> sp.Expr:
    """The per-entry gradient dL/dtheta_O / |O| of one coordinate, in the stage symbols of ``regime``."""
    m = reduced_model()
    d = _derivation(regime)
    if symbol in d["zero"]:
        return sp.Integer(0)
    is_kappa = symbol in set(m.kappa.values())
    total = sp.Integer(0)
    for k in d["classes"]:
        if is_kappa:
            term = sum(d["dl_du"][k][v] * sp.diff(m.score_expr[k][v], symbol) for v in m.score_expr[k])
        else:
            term = sum(
                d["grad_z"][k][t] * sp.diff(z, symbol) for t, z in m.logit_expr[k].items() if z.has(symbol)
            )
        total += d["class_weight"][k] * term
    if total == 0:
        return sp.Integer(0)
    orbit = m.orbit_size[symbol].xreplace(d["zero"])
    per_entry = sp.factor_terms(total) / orbit
    denominator = set(sp.Mul.make_args(sp.fraction(per_entry)[1]))
    if not is_kappa and any(f in denominator for f in sp.Mul.make_args(orbit) if not f.is_number):
        # Every monomial carries the orbit's factors (class weight n_k, role multiplicity), though not as one
        # common factor: expanding cancels them, so no update divides by a class size.
        per_entry = sp.expand(total / orbit)
    _check_no_class_size_division(symbol, per_entry, d)
    return per_entry


def _check_no_class_size_division(symbol, expr, d) -> None:
    """A per-entry gradient must stay finite at a class size of 0 or 1 (empty orbits): no division by
    a class size or by ``n_k - 1`` may survive the cancellation."""
    m = reduced_model()
    for k in d["classes"]:
        n = m.params[f"n_{k}"]
        for value in (0, 1):
            if expr.xreplace({n: value}).has(sp.zoo, sp.nan, sp.oo):
                raise AssertionError(
                    f"{symbol}: the per-entry gradient divides by a class size ({n} = {value})"
                )


# ---- emission ---------------------------------------------------------------------------------------------

_PARAMS = ("n_C", "n_CS", "n_S", "n_AUG", "K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m")


def _used_params(regime: Regime) -> tuple[str, ...]:
    drop = set()
    if not regime.has_s:
        drop.add("n_S")
    if not regime.has_aug:
        drop.add("n_AUG")
    return tuple(name for name in _PARAMS if name not in drop)


def _preamble(program: _Program, regime: Regime, moving) -> None:
    m = reduced_model()
    for name in _used_params(regime):
        program.raw(f'{name} = p["{name}"]')
    program.raw(f"({', '.join(str(s) for s in moving)},) = x")
    program.comment("Lemma 3: the pretrained table entries V[c, c] and V[a, s]")
    program.assign(
        [
            (m.params["lambda_C"], _float_constants(m.lam_c)),
            (m.params["lambda_M"], _float_constants(m.lam_m)),
        ],
        cse=False,
    )


def _maximum(names: list[str]) -> str:
    text = names[0]
    for name in names[1:]:
        text = f"jnp.maximum({text}, {name})"
    return text


def _substitution(regime: Regime) -> dict:
    """What a regime fixes: coordinates that never move (at their value, 0) and absent classes' sizes."""
    m = reduced_model()
    moving = set(_moving(regime))
    frozen = {s: sp.Integer(0) for s in m.state if s not in moving}
    return {**frozen, **_derivation(regime)["zero"]}


def _emit_attention(program: _Program, group: str, sub: dict) -> dict:
    """Emit a group's attention scores, their shift (the largest) and the softmax; returns the score symbols."""
    m = reduced_model()
    u = m.score_sym[group]
    program.assign(
        [(u[y], _float_constants(e.xreplace(sub))) for y, e in m.score_expr[group].items()], cse=False
    )
    program.raw(f"{m.att_shift[group]} = {_maximum([str(u[y]) for y in u])}")
    program.assign([(m.attention_sym[group][y], m.attention_expr[group][y]) for y in u])
    return u


def _emit_velocity(regime: Regime) -> list[str]:
    m = reduced_model()
    d = _derivation(regime)
    moving = _moving(regime)
    sub = _substitution(regime)
    program = _Program()
    _preamble(program, regime, moving)
    probs = {}  # P symbol of every role -> the P symbol emitted for its logit
    for k in d["classes"]:
        program.comment(f"class {k}: scores, attention, role logits, loss and its logit gradient")
        _emit_attention(program, k, sub)
        prob = _emit_class_loss(program, regime, k, sub)
        d_sigma = {
            y: _float_constants(e.xreplace(sub)).xreplace(prob) for y, e in d["dl_dsigma_expr"][k].items()
        }
        program.comment(f"class {k}: backward to attention and scores")
        probs.update(prob)
        if regime.value_trained:
            program.assign([(d["dl_dsigma"][k][y], e) for y, e in d_sigma.items()])
            program.assign([(d["dl_du"][k][v], e) for v, e in d["dl_du_expr"][k].items()])
        else:
            _emit_centered_backward(program, regime, k, d_sigma)
    program.comment("the per-entry gradient of every moving orbit, times -lr")
    velocity = []
    for s in moving:
        lr = "lr_kq" if s in set(m.kappa.values()) else "lr_v"
        velocity.append(
            (
                sp.Symbol(f"v_{s}"),
                -sp.Symbol(lr) * _float_constants(_gradient(regime, s).xreplace(sub)).xreplace(probs),
            )
        )
    program.raw('lr_kq = p["lr_kq"]')
    if regime.value_trained:
        program.raw('lr_v = p["lr_v"]')
    program.assign(velocity)
    weights = [(sp.Symbol(f"weight_{k}"), d["class_weight"][k]) for k in d["classes"]]
    program.assign(weights)
    loss = " + ".join(f"weight_{k} * {m.class_loss_sym[k]}" for k in d["classes"])
    program.raw(f"velocity = ({', '.join(str(v) for v, _ in velocity)},)")
    program.raw(f"return velocity, {loss}")
    return program.lines


def _emit_centered_backward(program: _Program, regime: Regime, k: str, d_sigma: dict) -> None:
    """dL/du through class ``k``'s attention softmax, centered on the relation slot.

    The attention sums to 1, so adding one constant to every dL/dsigma_y changes no dL/du_v =
    sigma_v (dL/dsigma_v - sum_y sigma_y dL/dsigma_y). Subtracting the relation slot's dL/dsigma before
    emitting lets sympy cancel what every slot shares (with W_V frozen: the untrained answers' and the
    relation's logits), instead of computing it and cancelling it in floating point at every step."""
    m = reduced_model()
    d = _derivation(regime)
    sigma = m.attention_sym[k]
    centered = {y: sp.expand(e - d_sigma["r"]) for y, e in d_sigma.items() if y != "r"}
    centered = {y: e for y, e in centered.items() if e != 0}
    program.assign([(d["dl_dsigma"][k][y], e) for y, e in centered.items()])
    dbar = sp.Symbol(f"dbar_{k}", real=True)
    program.assign(
        [(dbar, sum((sigma[y] * d["dl_dsigma"][k][y] for y in centered), sp.Integer(0)))], cse=False
    )
    du = {v: sigma[v] * ((d["dl_dsigma"][k][v] if v in centered else 0) - dbar) for v in m.score_sym[k]}
    program.assign([(d["dl_du"][k][v], e) for v, e in du.items()], cse=False)


def _attention_sums_to_one(k: str) -> dict:
    m = reduced_model()
    sigma = m.attention_sym[k]
    others = [sigma[y] for y in sigma if y != "r"]
    return {sigma["r"]: 1 - sum(others)}


def _emit_class_loss(program: _Program, regime: Regime, k: str, sub: dict) -> dict:
    """Emit class ``k``'s role logits, softmax over roles (with multiplicity) and loss; returns the map from
    every role's P symbol to the P symbol emitted for its logit.

    Roles with no tokens are dropped; roles whose logits are the same expression (in the frozen regime all
    untrained answers, say) share one logit, one exponential and one probability, with their
    multiplicities added."""
    m = reduced_model()
    d = _derivation(regime)
    zs = m.logit_sym[k]
    mult = {t: m.multiplicity[k][t].xreplace(d["zero"]) for t in zs}
    # Attention sums to 1: with sigma_r = 1 - sigma_c - sigma_s a logit that only averages one table value
    # over the input (every untrained answer's, say) is that value, a constant of the run.
    sums_to_one = _attention_sums_to_one(k)
    exprs = {
        t: sp.expand(_float_constants(m.logit_expr[k][t].xreplace(sub)).xreplace(sums_to_one))
        for t in zs
        if mult[t] != 0
    }
    canonical: dict = {}  # logit expression -> its first role
    for t, e in exprs.items():
        canonical.setdefault(e, t)
    rep = {t: canonical[e] for t, e in exprs.items()}
    roles = list(canonical.values())
    target = rep[m.targets[k]]
    program.assign([(zs[t], exprs[t]) for t in roles])
    group = {t0: sp.Symbol(f"mult_{k}_{_tname(t0)}", real=True) for t0 in roles}
    program.assign([(group[t0], sum(mult[t] for t in exprs if rep[t] == t0)) for t0 in roles], cse=False)
    # The shift only keeps exp() in range (the loss does not depend on it): the largest logit of any role.
    # With W_V frozen every logit averages entries of the pretrained value table over the input, so the
    # largest entry bounds them all: a constant of the run, and constant logits stay constant exponentials.
    if regime.value_trained:
        program.raw(f"{m.logit_shift[k]} = {_maximum([str(zs[t0]) for t0 in roles])}")
    else:
        program.raw(f"{m.logit_shift[k]} = {_maximum(['lambda_C', 'lambda_M', 'o_c', 'o_r', '0.0'])}")
    exp = {t0: sp.Symbol(f"E_{k}_{_tname(t0)}", real=True) for t0 in roles}
    program.assign([(exp[t0], sp.exp(zs[t0] - m.logit_shift[k])) for t0 in roles], cse=False)
    total = sp.Symbol(f"Z_{k}", real=True)
    program.assign([(total, sum(group[t0] * exp[t0] for t0 in roles))], cse=False)
    loss = m.class_loss_sym[k]
    program.assign([(loss, sp.log(total) + m.logit_shift[k] - zs[target])], cse=False)
    prob = d["prob"][k]
    program.assign([(prob[t0], exp[t0] / total) for t0 in roles], cse=False)
    if k in ("C", "CS"):
        # Either may be absent (size 0): its role multiplicities then make no distribution; its weight
        # in the loss is 0, and where() keeps its values from leaking NaN into the gradient.
        n = m.params[f"n_{k}"]
        program.raw(f"{loss} = jnp.where({n} != 0, {loss}, 0.0)")
        for t0 in roles:
            program.raw(f"{prob[t0]} = jnp.where({n} != 0, {prob[t0]}, 0.0)")
    return {prob[t]: prob[rep[t]] for t in exprs}


def _emit_probe(regime: Regime) -> list[str]:
    m = reduced_model()
    moving = _moving(regime)
    sub = _substitution(regime)
    program = _Program()
    _preamble(program, regime, moving)
    u = _emit_attention(program, "probe", sub)
    sigma = m.attention_sym["probe"]
    z_c, z_a = sp.Symbol("z_context"), sp.Symbol("z_memory")
    program.assign(
        [
            (z_c, _float_constants(m.probe_logit_expr["c*"].xreplace(sub))),
            (z_a, _float_constants(m.probe_logit_expr["a*"].xreplace(sub))),
        ]
    )
    magnitude = " + ".join(f"{sigma[y]} * jnp.abs({u[y]})" for y in u)
    program.raw("# M_C = p(c*) / (p(c*) + p(a*)) = sigmoid(z_c* - z_a*)")
    program.raw(
        f"return jax.nn.sigmoid(z_context - z_memory), jnp.abs(z_context) + jnp.abs(z_memory) + {magnitude}"
    )
    return program.lines


def _emit_probe_gap(regime: Regime) -> list[str]:
    """The probe's logit gap z_c* - z_a* alone (M_C = sigmoid of it, monotone): what an online peak tracks."""
    m = reduced_model()
    moving = _moving(regime)
    sub = _substitution(regime)
    program = _Program()
    _preamble(program, regime, moving)
    _emit_attention(program, "probe", sub)
    gap = sp.expand(_float_constants((m.probe_logit_expr["c*"] - m.probe_logit_expr["a*"]).xreplace(sub)))
    program.assign([(sp.Symbol("gap"), gap)])
    program.raw("return gap")
    return program.lines


def _emit_metrics(regime: Regime) -> list[str]:
    """Every record of the full engine at a state: the probe's role logits, multiplicities and attention,
    and per class its loss, attention on context and subject, and Lemma 2's margin."""
    m = reduced_model()
    d = _derivation(regime)
    moving = _moving(regime)
    sub = _substitution(regime)
    program = _Program()
    _preamble(program, regime, moving)
    out = {"loss": {}, "attention_context": {}, "attention_subject": {}, "margin": {}, "weight": {}}
    for k in d["classes"]:
        program.comment(f"class {k}")
        u = _emit_attention(program, k, sub)
        prob = _emit_class_loss(program, regime, k, sub)
        out["loss"][k] = str(m.class_loss_sym[k])
        out["attention_context"][k] = str(m.attention_sym[k]["c"]) if "c" in u else "0.0"
        out["attention_subject"][k] = str(m.attention_sym[k]["s"])
        weight = sp.Symbol(f"weight_{k}")
        program.assign([(weight, d["class_weight"][k])], cse=False)
        out["weight"][k] = str(weight)
        if k in m.column_expr:
            # Lemma 2: m = <v(c) - v(s), e_target - softmax(z)>, summed over roles with multiplicity.
            target = m.targets[k]
            margin = sum(
                (
                    _float_constants(m.column_expr[k]["c"][t].xreplace(sub))
                    - _float_constants(m.column_expr[k]["s"][t].xreplace(sub))
                )
                * ((1 if t == target else 0) - m.multiplicity[k][t].xreplace(d["zero"]) * d["prob"][k][t])
                for t in m.logit_sym[k]
            ).xreplace(prob)
            symbol = sp.Symbol(f"margin_{k}")
            program.assign([(symbol, margin)])
            out["margin"][k] = str(symbol)
    program.comment("the counterfactual probe [c*, s*, r]")
    u = _emit_attention(program, "probe", sub)
    sigma = m.attention_sym["probe"]
    roles = [
        r for r in m.probe_logit_expr if r in ("c*", "a*", "s*", "nA", "nS", "r") or r[0] in d["classes"]
    ]
    name = {r: (r if isinstance(r, str) else f"{r[0]}_{r[1]}") for r in roles}
    z = {r: sp.Symbol(f"z_probe_{i}") for i, r in enumerate(roles)}
    program.assign([(z[r], _float_constants(m.probe_logit_expr[r].xreplace(sub))) for r in roles])
    mult = {r: sp.Symbol(f"mult_probe_{i}") for i, r in enumerate(roles)}
    program.assign([(mult[r], m.probe_multiplicity[r].xreplace(d["zero"])) for r in roles], cse=False)
    book = _emit_closed_book(program, roles, sub)

    def mapping(values: dict) -> str:
        return "{" + ", ".join(f'"{key}": {value}' for key, value in values.items()) + "}"

    program.raw("return {")
    program.raw(f'    "probe_logit": {mapping({name[r]: z[r] for r in roles})},')
    program.raw(f'    "probe_multiplicity": {mapping({name[r]: mult[r] for r in roles})},')
    program.raw(f'    "probe_attention": {mapping({y: sigma[y] for y in u})},')
    program.raw(f'    "probe_score": {mapping({y: u[y] for y in u})},')
    program.raw(f'    "closed_book_logit": {mapping({name[r]: book["logit"][r] for r in roles})},')
    program.raw(f'    "closed_book_attention": {mapping(book["attention"])},')
    for key, values in out.items():
        program.raw(f'    "{key}": {mapping(values)},')
    program.raw("}")
    return program.lines


def _emit_closed_book(program: _Program, roles: list, sub: dict) -> dict:
    """The closed-book query [s*, r] of the probe's held-out memorized fact (a* its target): attention is the
    softmax over the probe's scores u_s, u_r alone (no context token to attend to), and the role logits are
    the probe's with sigma_c -> 0, sigma_s, sigma_r -> that attention. Logits are linear in attention and
    W_V's value rows are the probe's, so this is the same fact recalled without a context (its token
    multiplicities are the probe's: c* is then one more unused answer)."""
    m = reduced_model()
    u = m.score_sym["probe"]
    sigma = m.attention_sym["probe"]
    shift = sp.Symbol("ashift_book", real=True)
    program.raw(f"{shift} = {_maximum([str(u['s']), str(u['r'])])}")
    book = {y: sp.Symbol(f"sigma_book_{y}", real=True) for y in ("s", "r")}
    softmax = {y: sp.exp(u[y] - shift) for y in book}
    total = sum(softmax.values())
    program.assign([(book[y], softmax[y] / total) for y in book])
    closed = {sigma["c"]: sp.Integer(0), sigma["s"]: book["s"], sigma["r"]: book["r"]}
    logit = {r: sp.Symbol(f"z_book_{i}") for i, r in enumerate(roles)}
    program.assign(
        [(logit[r], _float_constants(m.probe_logit_expr[r].xreplace(sub)).xreplace(closed)) for r in roles]
    )
    return {"logit": logit, "attention": book}


_HEADER = '''"""GENERATED by ``python -m cpi_theory.reduced._codegen`` from the sympy model: do not edit.

The exact reduced GD dynamics restricted to the coordinates that move in each regime (see
:mod:`cpi_theory.reduced._codegen`). Per regime ``R``:

- ``STATE_R``: the names of the moving coordinates (``kappa_*``: q = W_KQ phi(r); ``w_*``: Delta W_V orbits);
- ``GENERAL_INDEX_R``: their positions in the general 166-coordinate state;
- ``velocity_R(x, p) -> (v, loss)``: ``x + v`` is one exact GD step (rates lr_kq, lr_v), ``loss`` the
  training loss at ``x``; ``x`` and ``v`` are tuples, coordinate i is ``STATE_R[i]``;
- ``probe_R(x, p) -> (context_reliance, magnitude)`` on the counterfactual probe; ``probe_gap_R(x, p)``
  its logit gap z_c* - z_a* alone (M_C is its sigmoid);
- ``metrics_R(x, p) -> dict``: the probe's role logits, multiplicities, attention and scores, the closed-book
  query [s*, r]'s role logits and attention, and per class its loss, attention on context and subject,
  Lemma 2's margin and its weight in the training loss.

``p`` maps the parameter names of :data:`cpi_theory.reduced.PARAM_NAMES` to float64 arrays; every
operation is elementwise, so a batch of runs is a batch axis on ``x`` and ``p``.
"""

# ruff: noqa: E501, F841

import jax
import jax.numpy as jnp

SQRT2 = 1.4142135623730951
'''


def generate() -> str:
    """The text of ``_generated.py``."""
    m = reduced_model()
    index = {s: i for i, s in enumerate(m.state)}
    parts = [_HEADER]
    for regime in REGIMES:
        moving = _moving(regime)
        names = ", ".join(f'"{s}"' for s in moving)
        parts.append(f"\n# ---- regime {regime.name}: {len(moving)} moving coordinates " + "-" * 40 + "\n")
        parts.append(f"STATE_{regime.name} = ({names},)\n")
        parts.append(f"GENERAL_INDEX_{regime.name} = ({', '.join(str(index[s]) for s in moving)},)\n\n")
        parts.append(f"\ndef velocity_{regime.name}(x, p):\n")
        parts.append("\n".join(_emit_velocity(regime)) + "\n\n")
        parts.append(f"\ndef probe_{regime.name}(x, p):\n")
        parts.append("\n".join(_emit_probe(regime)) + "\n")
        parts.append(f"\n\ndef probe_gap_{regime.name}(x, p):\n")
        parts.append("\n".join(_emit_probe_gap(regime)) + "\n")
        parts.append(f"\n\ndef metrics_{regime.name}(x, p):\n")
        parts.append("\n".join(_emit_metrics(regime)) + "\n")
    return "".join(parts)


if __name__ == "__main__":
    GENERATED.write_text(generate())
    print(f"wrote {GENERATED}")
