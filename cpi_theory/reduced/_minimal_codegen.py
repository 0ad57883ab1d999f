"""From the sympy model of :mod:`._symbolic` to one fused, straight-line JAX update per regime.

Run ``python -m cpi_theory.reduced._minimal_codegen`` to rewrite :mod:`._minimal_generated` (the committed
output; ``tests/test_reduced_minimal.py`` checks that it is what this module derives). Nothing about the
update is typed in: per regime (:mod:`._minimal_regime`) this module

1. drops the classes the regime has no points of and the token roles of zero multiplicity;
2. finds the reduced coordinates that can move: starting from the pretrained state's non-zero ones, a
   coordinate moves iff its sympy-derived velocity, with the non-moving coordinates at zero, is not
   identically zero (iterated to a fixed point). With lr_v = 0 no Delta W_V orbit moves;
3. writes the forward pass, the chain rule of the exact loss gradient (sympy derivatives of the logits and
   of the softmax cross-entropy) and the per-entry GD update ``-lr dL/dtheta_O / |O|`` of every moving
   coordinate, with the orbit sizes cancelled symbolically (so an update stays finite, and continuous in
   real class sizes, when an orbit empties; an empty orbit's coordinate is then held at zero, as in
   :func:`cpi_theory.reduced.reduced_train`);
4. hoists every sub-expression of the parameters alone (multiplicities, Lemma 3's table entries, the
   exponentials of logits that cannot move) into per-run constants computed once, and
5. emits straight-line code over scalars after ``sympy.cse``: no coefficient tensors, no zeros.

Numerical stability. Softmaxes over the inputs subtract their largest score. A class's logits are shifted
by their largest live value when W_V trains; with W_V frozen every logit is a convex combination of one row
of the pretrained value table, so the constant shift ``max(o_c, 0, o_r)`` (the logits of the untrained
answers, subjects and r, whose multiplicities are >= 1) bounds every exponent by
``logit(delta) + log(K_A + K_S)`` and keeps every sum >= 1: the logits that cannot move then have constant
exponentials.
"""

import dataclasses
import functools
import pathlib
import sys

import sympy as sp

from ._minimal_regime import REGIMES, Regime
from ._symbolic import CLASSES, reduced_model

GENERATED = pathlib.Path(__file__).with_name("_minimal_generated.py")


# ---- opaque operations: sympy carries them through cse unevaluated, the printer writes the JAX op -------
class Maximum(sp.Function):
    """Elementwise maximum of the arguments."""


class Indicator(sp.Function):
    """1.0 where the argument is non-zero, else 0.0 (class presence, non-empty orbits)."""


class LiveLogit(sp.Function):
    """``LiveLogit(M, z)``: z where the multiplicity M > 0, else -inf (a shift ignores absent roles)."""


class LiveExponent(sp.Function):
    """``LiveExponent(M, x)``: x where M != 0, else -inf (an absent role's exponential is exactly 0)."""


class SafeSum(sp.Function):
    """``SafeSum(present, S)``: S where the class has points, else 1 (an absent class stays finite)."""


class Logistic(sp.Function):
    """The logistic sigmoid (``jax.nn.sigmoid``)."""


_SQRT_HALF = sp.sqrt(sp.Rational(1, 2))


# ---- the printer ---------------------------------------------------------------------------------------
def _float(value) -> str:
    text = repr(float(sp.N(value, 40)))
    return f"({text})" if text.startswith("-") else text


def _paren(e) -> str:
    text = _print(e)
    if isinstance(e, sp.Add | sp.Mul) or (isinstance(e, sp.Pow) and not e.free_symbols):
        return f"({text})"
    return f"({text})" if text.startswith("-") else text


def _print_mul(e) -> str:
    coeff = sp.Integer(1)
    numerator, denominator = [], []
    for factor in e.args:
        if not factor.free_symbols:
            coeff *= factor
        elif isinstance(factor, sp.Pow) and factor.exp.is_Integer and factor.exp < 0:
            denominator.append(factor.base if factor.exp == -1 else sp.Pow(factor.base, -factor.exp))
        else:
            numerator.append(factor)
    sign = ""
    if coeff.is_negative:
        sign, coeff = "-", -coeff
    parts = [] if coeff == 1 else [_float(coeff)]
    parts += [_paren(f) for f in numerator]
    text = "*".join(parts) if parts else "1.0"
    if denominator:
        den = "*".join(_paren(f) for f in denominator)
        text = f"{text}/({den})" if len(denominator) > 1 else f"{text}/{den}"
    return sign + text


def _print(e) -> str:
    if isinstance(e, sp.Symbol):
        return e.name
    if not e.free_symbols:
        return _float(e)
    if isinstance(e, sp.Add):
        terms = list(e.args)
        # Numbers last: sympy puts them first; this reads as a sum of terms plus a constant.
        terms = [t for t in terms if t.free_symbols] + [t for t in terms if not t.free_symbols]
        text = _print(terms[0])
        for t in terms[1:]:
            negative = (isinstance(t, sp.Mul) and t.as_coeff_Mul()[0].is_negative) or (
                not t.free_symbols and t.is_negative
            )
            text += f" - {_print(-t)}" if negative else f" + {_print(t)}"
        return text
    if isinstance(e, sp.Mul):
        return _print_mul(e)
    if isinstance(e, sp.Pow):
        base, exponent = e.args
        if exponent == sp.Rational(1, 2):
            return f"jnp.sqrt({_print(base)})"
        if exponent.is_Integer and exponent > 0:
            return f"{_paren(base)}**{int(exponent)}"
        if exponent.is_Integer and exponent < 0:
            return f"1.0/{_paren(sp.Pow(base, -exponent))}"
        raise ValueError(f"cannot print power {e}")
    if isinstance(e, sp.exp):
        return f"jnp.exp({_print(e.args[0])})"
    if isinstance(e, sp.log):
        return f"jnp.log({_print(e.args[0])})"
    if isinstance(e, Maximum):
        text = _print(e.args[0])
        for a in e.args[1:]:
            text = f"jnp.maximum({text}, {_print(a)})"
        return text
    if isinstance(e, Indicator):
        return f"jnp.where({_print(e.args[0])} != 0, 1.0, 0.0)"
    if isinstance(e, LiveLogit):
        return f"jnp.where({_print(e.args[0])} > 0, {_print(e.args[1])}, -jnp.inf)"
    if isinstance(e, LiveExponent):
        return f"jnp.where({_print(e.args[0])} != 0, {_print(e.args[1])}, -jnp.inf)"
    if isinstance(e, SafeSum):
        return f"jnp.where({_print(e.args[0])} != 0, {_print(e.args[1])}, 1.0)"
    if isinstance(e, Logistic):
        return f"jax.nn.sigmoid({_print(e.args[0])})"
    raise ValueError(f"cannot print {type(e).__name__}: {e}")


# ---- straight-line programs ----------------------------------------------------------------------------
class _Program:
    """Assignments in dependency order; sub-expressions of the parameters alone go to ``constants``."""

    def __init__(self, params: set, constants: "_Constants"):
        self.params = params
        self.constants = constants
        self.lines: list[tuple[sp.Symbol, sp.Expr]] = []

    def _is_constant(self, e) -> bool:
        return all(s in self.params or s in self.constants.symbols for s in e.free_symbols)

    def hoist(self, e):
        """``e`` with every maximal sub-expression of parameters alone replaced by a constant symbol."""
        if not e.free_symbols or e in self.constants.symbols or (e.is_Atom and not self._is_constant(e)):
            return e
        if self._is_constant(e):
            return self.constants.symbol(e)
        if isinstance(e, sp.Add | sp.Mul):
            fixed = [a for a in e.args if self._is_constant(a)]
            moving = [self.hoist(a) for a in e.args if not self._is_constant(a)]
            if any(a.free_symbols for a in fixed):
                fixed = [self.constants.symbol(e.func(*fixed))]
            return e.func(*fixed, *moving)
        return e.func(*[self.hoist(a) for a in e.args])

    def define(self, name: str, e):
        """Assign ``e`` to a new symbol (returned), or return ``e`` itself if it is a constant."""
        e = self.hoist(e)
        if not (e.free_symbols - set(self.constants.symbols)):
            return e
        symbol = sp.Symbol(name, real=True)
        self.lines.append((symbol, e))
        return symbol

    def render(self, outputs: list, prefix: str) -> tuple[list, list]:
        """The assignments the outputs need (in dependency order) and the outputs, after one ``sympy.cse``."""
        exprs = [e for _, e in self.lines] + [self.hoist(o) for o in outputs]
        temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(f"{prefix}_t"), order="canonical")
        items = [(s, e) for s, e in temps] + [(s, e) for (s, _), e in zip(self.lines, reduced, strict=False)]
        outputs = reduced[len(self.lines) :]
        return _needed_in_order(items, outputs), outputs


def _needed_in_order(items, outputs) -> list:
    """The assignments the outputs use, each after what it uses (cse temps may use later stage symbols)."""
    defined = {s: (i, e) for i, (s, e) in enumerate(items)}
    done, ordered = set(), []

    def emit(symbol):
        if symbol in done or symbol not in defined:
            return
        done.add(symbol)
        e = defined[symbol][1]
        for dep in sorted((d for d in e.free_symbols if d in defined), key=lambda d: defined[d][0]):
            emit(dep)
        ordered.append((symbol, e))

    for output in outputs:
        for symbol in sorted((d for d in output.free_symbols if d in defined), key=lambda d: defined[d][0]):
            emit(symbol)
    return ordered


class _Constants:
    """Per-run constants (expressions in the inputs), deduplicated."""

    def __init__(self):
        self.exprs: dict = {}  # expression -> symbol
        self.symbols: dict = {}  # symbol -> expression

    def symbol(self, e):
        e = e.xreplace(self.symbols)  # in the inputs alone
        if e not in self.exprs:
            s = sp.Symbol(f"k{len(self.exprs)}", real=True)
            self.exprs[e] = s
            self.symbols[s] = e
        return self.exprs[e]


# ---- the derivation ------------------------------------------------------------------------------------
INPUT_NAMES = (
    "n_C",
    "n_CS",
    "n_S",
    "n_AUG",
    "K_A",
    "K_S",
    "o_c",
    "o_r",
    "delta_c",
    "delta_m",
    "relation_score",
    "lr_kq",
    "lr_v",
    "initial_score_gap",
)


@dataclasses.dataclass(frozen=True)
class RegimeCode:
    """The generated source of one regime and what the runtime needs to know about it."""

    regime: Regime
    state: tuple[str, ...]  # moving reduced coordinates, in reduced_model().state order
    source: str
    probe_roles: tuple  # probe logit names, in the order the probe returns them


def _role_name(role) -> str:
    return "_".join(str(x) for x in role[1])


def _surely_live(role) -> bool:
    """Roles whose multiplicity is >= 1 for every valid configuration: a point's own tokens, r, and the
    untrained answers (>= 2: c*, a*) and subjects (>= 1: s*)."""
    return role[1][0] in ("same", "nA", "nS", "r")


@functools.cache
def derive(regime: Regime) -> RegimeCode:
    """Derive the minimal state and the fused update, probe and constants of ``regime`` (deterministic)."""
    m = reduced_model()
    p = m.params
    n = {k: p[f"n_{k}"] for k in CLASSES}
    classes = regime.classes
    absent = {n[k]: sp.Integer(0) for k in CLASSES if k not in classes}
    lr_kq, lr_v = sp.Symbol("lr_kq", real=True), sp.Symbol("lr_v", real=True)
    relation_score = sp.Symbol("relation_score", real=True)
    gap = sp.Symbol("initial_score_gap", real=True)
    inputs = {**{name: p[name] for name in INPUT_NAMES if name in p}, "lr_kq": lr_kq, "lr_v": lr_v}
    inputs.update(relation_score=relation_score, initial_score_gap=gap)
    params = {*inputs.values(), p["lambda_C"], p["lambda_M"]}
    n_total = sum(n[k] for k in classes)
    kappa_syms = set(m.kappa.values())

    # Roles of each class with a non-zero multiplicity, and the roles' logits as functions of the state.
    mult = {k: {t: sp.sympify(mu).xreplace(absent) for t, mu in m.multiplicity[k].items()} for k in classes}
    roles = {k: [t for t in m.logit_expr[k] if mult[k][t] != 0] for k in classes}

    # Stage symbols the velocities are written in: attention-score gradients b and token probabilities P.
    b_sym = {k: {v: sp.Symbol(f"b_{k}_{v}", real=True) for v in m.score_expr[k]} for k in classes}
    prob_sym = {k: {t: sp.Symbol(f"P_{k}_{_role_name(t)}", real=True) for t in roles[k]} for k in classes}
    orbit = {s: sp.sympify(o).xreplace(absent) for s, o in m.orbit_size.items()}

    # Logits are affine in Delta W_V: dz_t/dw per (class, role), read off the expanded logits once.
    w_syms = set(m.w.values())
    dz_dw = {}
    for k in classes:
        for t in roles[k]:
            coefficients: dict = {}
            for term in sp.Add.make_args(m.logit_expr[k][t]):
                (w_sym,) = term.free_symbols & w_syms or (None,)
                if w_sym is not None:
                    coefficients[w_sym] = coefficients.get(w_sym, 0) + term / w_sym
            dz_dw[(k, t)] = coefficients
    cancel = functools.cache(sp.cancel)

    def velocity(theta) -> sp.Expr:
        """-lr dL/dtheta / |O| (orbit sizes cancelled), in the stage symbols; 0 if nothing reaches theta."""
        if orbit[theta] == 0:
            return sp.Integer(0)
        total = sp.Integer(0)
        for k in classes:
            weight = n[k] / n_total  # dL/dloss_k
            if theta in kappa_syms:
                grad = sum(b_sym[k][v] * sp.diff(u, theta) for v, u in m.score_expr[k].items())
                total += cancel(weight / orbit[theta]) * grad
                continue
            for t in roles[k]:
                dz = dz_dw[(k, t)].get(theta)
                if dz is None:
                    continue
                # dloss_k/dz_t = M_t P_t - [t is the target]: the multiplicity cancels against the orbit.
                term = cancel(weight * mult[k][t] / orbit[theta]) * prob_sym[k][t]
                if t == m.targets[k]:
                    term -= cancel(weight / orbit[theta])
                total += term * dz
        lr = lr_kq if theta in kappa_syms else (lr_v if regime.value_trained else sp.Integer(0))
        return -lr * total

    # Moving coordinates: the pretrained state's non-zero ones, closed under "has a non-zero velocity".
    # The velocity is written in the stage quantities (b, P), which do not depend on which coordinates
    # sit at zero, so one pass reaches the fixed point.
    moving = {m.kappa[("shared", "er")], m.kappa[("shared", "thC")], m.kappa[("shared", "thS")]}
    moving |= {s for s in m.state if velocity(s) != 0}
    state = tuple(s for s in m.state if s in moving)
    frozen = {s: sp.Integer(0) for s in m.state if s not in moving}

    constants = _Constants()
    step = _Program(params, constants)
    present = {k: Indicator(n[k]) for k in classes}
    # With W_V frozen every logit is a convex combination of one row of the value table (module docstring).
    frozen_shift = Maximum(p["o_c"], sp.Integer(0), p["o_r"])

    per_class, losses, prob_expr, b_expr = {}, {}, {}, {}
    for k in classes:
        sig_sym = m.attention_sym[k]
        u = {v: step.define(f"u_{k}_{v}", e.xreplace(frozen)) for v, e in m.score_expr[k].items()}
        shift = step.define(f"ashift_{k}", Maximum(*u.values()))
        ex = {v: step.define(f"E_{k}_{v}", sp.exp(u[v] - shift)) for v in u}
        inv_den = step.define(f"rden_{k}", 1 / sum(ex.values()))
        sig = {v: step.define(f"sigma_{k}_{v}", ex[v] * inv_den) for v in u}
        free = [v for v in sig_sym if v != "r"]
        # sum(sigma) = 1: with sigma_r eliminated, logits that cannot move are constants.
        on_simplex = {sig_sym["r"]: 1 - sum(sig_sym[v] for v in free)}
        groups: dict = {}  # (base, slopes) -> roles with identical logits
        for t in roles[k]:
            z = sp.expand(m.logit_expr[k][t].xreplace(frozen).xreplace(on_simplex))
            slopes = tuple(sp.expand(sp.diff(z, sig_sym[v])) for v in free)
            base = sp.expand(z.xreplace({sig_sym[v]: 0 for v in free}))
            groups.setdefault((base, slopes), []).append(t)
        z_g, slope_g, mult_g, live_g = [], [], [], []
        for i, ((base, slopes), members) in enumerate(groups.items()):
            d = [step.define(f"D_{k}_{v}_{i}", s) for v, s in zip(free, slopes, strict=True)]
            z_g.append(
                step.define(f"z_{k}_{i}", base + sum(sig[v] * dv for v, dv in zip(free, d, strict=True)))
            )
            slope_g.append(d)
            mult_g.append(sum(mult[k][t] for t in members))
            live_g.append(any(_surely_live(t) for t in members))
        target = next(i for i, members in enumerate(groups.values()) if m.targets[k] in members)
        if regime.value_trained:
            shift_z = step.define(
                f"zshift_{k}",
                Maximum(
                    *[
                        z if live else LiveLogit(mu, z)
                        for z, mu, live in zip(z_g, mult_g, live_g, strict=True)
                    ]
                ),
            )
        else:
            shift_z = frozen_shift
        e_g = []
        for i, (z, mu, live) in enumerate(zip(z_g, mult_g, live_g, strict=True)):
            exponent = z - shift_z if (live or not regime.value_trained) else LiveExponent(mu, z - shift_z)
            e_g.append(step.define(f"e_{k}_{i}", sp.exp(exponent)))
        total = step.define(
            f"S_{k}", SafeSum(present[k], sum(mu * e for mu, e in zip(mult_g, e_g, strict=True)))
        )
        inv_total = step.define(f"rS_{k}", 1 / total)
        losses[k] = step.define(f"loss_{k}", sp.log(total) + shift_z - z_g[target])
        # dloss/dsigma_v along the simplex: sum_t (M_t P_t - [target]) dz_t/dsigma_v.
        a = {}
        for j, v in enumerate(free):
            weighted = sum(mu * e * d[j] for mu, e, d in zip(mult_g, e_g, slope_g, strict=True))
            a[v] = step.define(f"a_{k}_{v}", weighted * inv_total - slope_g[target][j])
        a_bar = step.define(f"abar_{k}", sum(sig[v] * a[v] for v in free))
        # Softmax Jacobian: dloss/du_v = sigma_v (a_v - sum_y sigma_y a_y), with a_r = 0 on the simplex.
        b_expr[k] = {v: sig[v] * (a[v] - a_bar) for v in free}
        b_expr[k]["r"] = -sig["r"] * a_bar
        index = {t: i for i, members in enumerate(groups.values()) for t in members}
        prob_expr[k] = {t: e_g[index[t]] * inv_total for t in roles[k]}
        margin = a["s"] - a["c"] if "c" in free else None  # Lemma 2: <v(c) - v(s), e_target - softmax(z)>
        per_class[k] = (losses[k], sig.get("c"), sig["s"], margin)

    loss = sum(n[k] / n_total * losses[k] for k in classes)
    stage = {b_sym[k][v]: e for k in classes for v, e in b_expr[k].items()}
    stage.update({prob_sym[k][t]: e for k in classes for t, e in prob_expr[k].items()})
    new_state = []
    for theta in state:
        v = velocity(theta).xreplace(stage)
        if not (orbit[theta].is_Number and orbit[theta] != 0):
            v = Indicator(orbit[theta]) * v  # an empty orbit's coordinate stays at zero
        new_state.append(theta + v)
    class_outputs = [e for k in classes for e in per_class[k] if e is not None]
    step_lines, step_out = step.render([*new_state, loss, *class_outputs], "s")

    # ---- the counterfactual probe [c*, s*, r] ----------------------------------------------------------
    probe = _Program(params, constants)
    sig_sym = m.attention_sym["probe"]
    u = {v: probe.define(f"u_{v}", e.xreplace(frozen)) for v, e in m.score_expr["probe"].items()}
    shift = probe.define("ashift", Maximum(*u.values()))
    ex = {v: probe.define(f"E_{v}", sp.exp(u[v] - shift)) for v in u}
    inv_den = probe.define("rden", 1 / sum(ex.values()))
    sig = {v: probe.define(f"sigma_{v}", ex[v] * inv_den) for v in u}
    on_simplex = {sig_sym["r"]: 1 - sig_sym["c"] - sig_sym["s"]}
    to_stage = {sig_sym["c"]: sig["c"], sig_sym["s"]: sig["s"]}

    def probe_logit(name):
        z = sp.expand(m.probe_logit_expr[name].xreplace(frozen).xreplace(on_simplex))
        return sp.collect(z, [sig_sym["c"], sig_sym["s"]]).xreplace(to_stage)

    probe_mult = {r: sp.sympify(mu).xreplace(absent) for r, mu in m.probe_multiplicity.items()}
    probe_roles = tuple(r for r in m.probe_logit_expr if probe_mult[r] != 0)
    # M_C = sigmoid(z_c* - z_a*), the difference taken symbolically (the normaliser cancels).
    gap_expr = sp.expand(
        (m.probe_logit_expr["c*"] - m.probe_logit_expr["a*"]).xreplace(frozen).xreplace(on_simplex)
    )
    mc_gap = probe.define("mc_gap", sp.collect(gap_expr, [sig_sym["c"], sig_sym["s"]]).xreplace(to_stage))
    logits = [probe.define(f"z_{i}", probe_logit(r)) for i, r in enumerate(probe_roles)]
    probe_outputs = [Logistic(mc_gap), sig["c"], sig["s"], *logits, *[probe_mult[r] for r in probe_roles]]
    probe_lines, probe_out = probe.render(probe_outputs, "p")

    # ---- per-run constants (only those the step and the probe use) and the initial state -------------
    used = set()
    for items, outputs in ((step_lines, step_out), (probe_lines, probe_out)):
        used |= set().union(*(e.free_symbols for _, e in items), *(e.free_symbols for e in outputs))
    kept = [s for s in constants.symbols if s in used]
    rename = {s: sp.Symbol(f"k{i}", real=True) for i, s in enumerate(kept)}
    lam = {p["lambda_C"]: m.lam_c, p["lambda_M"]: m.lam_m}
    temps, reduced = sp.cse(
        [constants.symbols[s].xreplace(lam) for s in kept],
        symbols=sp.numbered_symbols("c_t"),
        order="canonical",
    )
    const_items = [*temps, *zip(rename.values(), reduced, strict=True)]
    initial = {
        m.kappa[("shared", "er")]: relation_score,
        # initial_score_gap = u_c - u_s of every point at t = 0 (0: the pretrained even split).
        m.kappa[("shared", "thC")]: gap * _SQRT_HALF,
        m.kappa[("shared", "thS")]: -gap * _SQRT_HALF,
    }
    const_inputs = set().union(*(e.free_symbols for _, e in const_items))

    def unpack(symbols):
        return [f'    {s.name} = p["{key}"]' for key, s in inputs.items() if s in symbols]

    def assign(items):
        return [f"    {s.name} = {_print(e.xreplace(rename))}" for s, e in items]

    def printed(outputs):
        return [_print(e.xreplace(rename)) for e in outputs]

    name = regime.name
    k_names = ", ".join(s.name for s in rename.values()) + ","
    x_names = ", ".join(s.name for s in state) + ","
    src = [
        f"# ---- {name}: {len(state)} moving coordinates, {len(kept)} constants; classes {', '.join(classes)}",
        "",
    ]
    src += [
        f"def {name}_initial(p):",
        f'    """The pretrained state of regime {name} (its moving coordinates)."""',
    ]
    src += unpack({relation_score, gap})
    src += [f"    return ({', '.join(_print(initial.get(s, sp.Integer(0))) for s in state)},)", ""]
    src += [
        f"def {name}_constants(p):",
        f'    """The per-run constants of regime {name}, from the inputs."""',
    ]
    src += unpack(const_inputs) + assign(const_items) + [f"    return ({k_names})", ""]
    src += [
        f"def {name}_step(x, k):",
        '    """One exact GD step: the new state, the loss before it and per class (loss, attention on c, on s,',
        '    margin) of the state before it (None: no context)."""',
        f"    ({x_names}) = x",
        f"    ({k_names}) = k",
    ]
    out = iter(printed(step_out))
    new = [next(out) for _ in state]
    loss_text = next(out)
    per_class_text = []
    for k in classes:
        values = [next(out) if e is not None else "None" for e in per_class[k]]
        per_class_text.append(f'"{k}": ({", ".join(values)})')
    src += assign(step_lines) + [f"    new_state = ({', '.join(new)},)"]
    src += [f"    return new_state, {loss_text}, {{{', '.join(per_class_text)}}}", ""]
    src += [
        f"def {name}_probe(x, k):",
        '    """The probe: M_C, attention on c* and s*, the probe roles\' logits and multiplicities."""',
        f"    ({x_names}) = x",
        f"    ({k_names}) = k",
    ]
    out = iter(printed(probe_out))
    mc_text, att_c, att_s = next(out), next(out), next(out)
    z_text = [next(out) for _ in probe_roles]
    mult_text = [next(out) for _ in probe_roles]
    src += assign(probe_lines)
    src += [f"    return {mc_text}, {att_c}, {att_s}, ({', '.join(z_text)},), ({', '.join(mult_text)},)", ""]
    return RegimeCode(
        regime=regime,
        state=tuple(s.name for s in state),
        source="\n".join(src),
        probe_roles=tuple(r if isinstance(r, str) else tuple(r) for r in probe_roles),
    )


_HEADER = '''"""GENERATED by ``python -m cpi_theory.reduced._minimal_codegen`` from the sympy model: do not edit.

One fused, straight-line exact GD update per regime of :mod:`cpi_theory.reduced._minimal_regime` (see
:mod:`cpi_theory.reduced._minimal_codegen` for the derivation). ``x``: the moving reduced coordinates
(names in ``REGIMES[name]["state"]``); ``k``: the per-run constants; ``p``: the inputs (a mapping).
"""

import jax
import jax.numpy as jnp
'''


def generate_source() -> str:
    """The text of :mod:`._minimal_generated` (before formatting)."""
    codes = [derive(r) for r in REGIMES]
    parts = [_HEADER]
    for code in codes:
        parts.append(code.source)
        parts.append("")
    table = []
    for code in codes:
        name = code.regime.name
        table.append(
            f'    "{name}": dict(\n'
            f"        state={code.state!r},\n"
            f"        probe_roles={code.probe_roles!r},\n"
            f"        initial={name}_initial,\n"
            f"        constants={name}_constants,\n"
            f"        step={name}_step,\n"
            f"        probe={name}_probe,\n"
            "    ),"
        )
    parts.append("# Regime name -> its state names, probe roles and generated functions.")
    parts.append("REGIMES = {\n" + "\n".join(table) + "\n}\n")
    return "\n".join(parts)


def main(argv=None) -> int:
    """Write :mod:`._minimal_generated` (then ``ruff format`` it: the tests compare syntax trees)."""
    path = pathlib.Path(argv[0]) if argv else GENERATED
    path.write_text(generate_source())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
