"""The exact reduced dynamics, derived symbolically (sympy) from the class-level forward pass and loss.

Why a reduction exists (SPEC.md §6). Let Gamma be the group that permutes the points of one data class
(together with their tokens) and permutes the tokens no training point uses. The training loss is
Gamma-invariant and so is the pretrained state, hence every gradient-descent iterate is Gamma-invariant:

* ``q = W_KQ phi(r)`` (the only column of W_KQ that attention sees or that the gradient touches) has one
  coefficient per (class, input slot) on the unique directions of training tokens (``kappa``), plus its
  ``theta_S``, ``theta_C`` and ``e_r`` components. Untrained tokens (c*, s*, unused tokens) are scored by
  the shared components only.
* ``W_V = W_V(0) + Delta``; every gradient ``Phi g h^T`` has columns in the span of the input tokens'
  unique directions and the three shared directions, so ``Delta`` is constant on the Gamma-orbits of
  (row direction, column direction) pairs: one scalar per orbit (``w``). Orbits are labelled by the role
  of the row direction (a slot of the same point, a slot of another point of some class, an untrained
  answer ``nA``, an untrained subject ``nS``, or a shared direction) and of the column direction (an input
  slot of a class, or a shared direction).

Write the parameters as ``W = W0 + sum_O theta_O B_O`` with ``B_O`` the 0/1 indicator of orbit ``O``. Then
``dL/dtheta_O = <grad_W L, B_O> = |O| * (the common gradient entry on O)``, so gradient descent on the full
matrices is *exactly* ``theta_O <- theta_O - lr * (dL/dtheta_O) / |O|``. The class-level loss ``L(theta)``
below is the full training loss evaluated on such matrices: per class a representative point, its logits
over token *roles* and the number of tokens sharing each role (functions of vocabulary and class sizes).
Nothing about the update is typed in by hand: sympy differentiates ``L``.

Class sizes enter only as the symbols ``n_C, n_CS, n_S, n_AUG`` (and vocabulary sizes as ``K_A, K_S``), so
the same expressions hold for real class sizes: the analytic continuation in the class sizes, i.e. a data
mixture whose class weights are ``n_k / sum(n)`` and whose loss is the weighted mean of the per-class
losses (with ``n_k - 1`` "other points" of a point's own class in its softmax).

Numerical stability: every softmax carries a *shift* symbol treated as a constant by sympy (the loss does
not depend on it); the numerical engine passes the maximum.
"""

import dataclasses
import functools

import sympy as sp

from ..config._data_class import DataClass

# Class labels in DATA_CLASSES order: context-critical, non-context-critical (C+S), subject-only, augmented.
CLASSES = tuple(data_class.symbol for data_class in DataClass)  # ("C", "CS", "S", "AUG")
# Tokens owned by one point of each class: c = context, s = subject, a = S-point target, m = memorized
# answer of an augmented point's subject (different from its context).
SLOTS = {"C": ("c", "s"), "CS": ("c", "s"), "S": ("s", "a"), "AUG": ("c", "s", "m")}
INPUT_SLOTS = {"C": ("c", "s"), "CS": ("c", "s"), "S": ("s",), "AUG": ("c", "s")}
TARGET = {"C": "c", "CS": "c", "S": "a", "AUG": "c"}
# Memorized facts (subject slot -> answer slot) and self-copying context tokens of each point.
FACTS = {"C": {}, "CS": {"s": "c"}, "S": {"s": "a"}, "AUG": {"s": "m"}}
SELF_COPY = {"C": ("c",), "CS": ("c",), "S": (), "AUG": ("c",)}
SHARED = ("thS", "thC", "er")
SQRT_HALF = sp.sqrt(sp.Rational(1, 2))


def _is_subject(slot: str) -> bool:
    return slot == "s"


@dataclasses.dataclass(frozen=True)
class ReducedModel:
    """Symbols and expressions of the reduced model (built once by :func:`reduced_model`).

    The forward pass is staged through intermediate symbols so that every expression stays small:
    state ``kappa`` -> attention scores ``u`` -> attention ``sigma`` (softmax) -> role logits ``z``
    (linear in the ``w``) -> class losses. Gradients are sympy derivatives of each stage, composed by the
    chain rule (:func:`symbolic_gradient` writes dL/dtheta_O in the stage symbols; the engine composes the
    same sympy derivatives as tensors).

    Keys: a class is one of :data:`CLASSES` or ``"probe"``; a role is ``(kind, role)`` with role
    ``("same", slot)``, ``("other", class, slot)``, ``("nA",)`` (an untrained answer, c* and a* included),
    ``("nS",)`` (an untrained subject, s* included) or ``("r",)``; probe roles are named ``"c*"``, ``"a*"``,
    ``"s*"``, ``"nA"``, ``"nS"``, ``"r"`` and ``(class, slot)``.
    """

    state: tuple  # kappa symbols then w symbols
    kappa: dict
    w: dict
    orbit_size: dict  # |O| per state symbol
    params: dict
    lam_c: sp.Expr  # Lemma 3: V[c, c] = logit(delta_C) + log Z
    lam_m: sp.Expr  # Lemma 3: V[a, s] = logit(delta_M) + log Z
    score_expr: dict  # class -> slot -> u(kappa)
    score_sym: dict
    att_shift: dict
    attention_expr: dict  # class -> slot -> sigma(u_sym, shift)
    attention_sym: dict
    attention_jacobian_expr: dict  # (class, y, v) -> d sigma_y / d u_v in the sigma symbols
    attention_jacobian_sym: dict
    logit_expr: dict  # class -> role -> z(w, sigma_sym, params)
    logit_sym: dict
    column_expr: dict  # class -> "c"/"s" -> role -> v(y)[role] (value logits of the own context/subject)
    multiplicity: dict  # class -> role -> number of tokens of that role
    targets: dict
    logit_shift: dict
    class_loss: dict  # class -> loss(z_sym, shift)
    loss: sp.Expr  # sum_k n_k loss_k / N in terms of class-loss symbols
    class_loss_sym: dict
    margin: dict  # class -> margin(z_sym, column values via column_expr)
    probe_logit_expr: dict
    probe_multiplicity: dict
    loss_grad_sym: dict  # class -> role -> symbol for dloss_k/dz_role
    loss_grad_expr: dict


def _state_symbols():
    kappa = {}
    for k in CLASSES:
        for rho in INPUT_SLOTS[k]:
            kappa[("own", k, rho)] = sp.Symbol(f"kappa_{k}_{rho}", real=True)
    for x in SHARED:
        kappa[("shared", x)] = sp.Symbol(f"kappa_{x}", real=True)

    w = {}
    for k in CLASSES:
        for rho in INPUT_SLOTS[k]:
            col = ("own", k, rho)
            for sigma in SLOTS[k]:
                w[(("same", sigma), col)] = sp.Symbol(f"w_same_{k}_{sigma}_{k}_{rho}", real=True)
            for other in CLASSES:
                for sigma in SLOTS[other]:
                    w[(("other", other, sigma), col)] = sp.Symbol(
                        f"w_other_{other}_{sigma}_{k}_{rho}", real=True
                    )
            for row in ("nA", "nS", *SHARED):
                w[((row,), col)] = sp.Symbol(f"w_{row}_{k}_{rho}", real=True)
    for x in SHARED:
        col = ("shared", x)
        for other in CLASSES:
            for sigma in SLOTS[other]:
                w[(("train", other, sigma), col)] = sp.Symbol(f"w_{other}_{sigma}_{x}", real=True)
        for row in ("nA", "nS", *SHARED):
            w[((row,), col)] = sp.Symbol(f"w_{row}_{x}", real=True)
    return kappa, w


def _params():
    names = ("n_C", "n_CS", "n_S", "n_AUG", "K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m")
    p = {name: sp.Symbol(name, real=True) for name in names}
    # Lemma 3's two table entries enter the dynamics as symbols (their closed forms are lam_c, lam_m).
    p["lambda_C"] = sp.Symbol("lambda_C", real=True)
    p["lambda_M"] = sp.Symbol("lambda_M", real=True)
    return p


def _softmax(values: dict, shift) -> dict:
    e = {y: sp.exp(v - shift) for y, v in values.items()}
    total = sum(e.values())
    return {y: ev / total for y, ev in e.items()}


@dataclasses.dataclass(frozen=True)
class _Symbols:
    """What every stage of :func:`reduced_model` reads: the state and parameter symbols, the class sizes
    and the numbers of untrained tokens (functions of the vocabulary and class sizes)."""

    kappa: dict
    w: dict
    p: dict
    n: dict  # class -> its size symbol n_k
    unused_answers: sp.Expr  # includes c*, a*
    unused_subjects: sp.Expr  # includes s*

    def dw(self, k, row, col):
        """Delta W_V[row direction, column direction] seen from class k's point (0 where no gradient reaches).

        A shared column does not distinguish the row token's point from the others of its class.
        """
        if col[0] == "shared" and row[0] in ("same", "other"):
            row = ("train", k if row[0] == "same" else row[1], row[-1])
        return self.w.get((row, col), sp.Integer(0))


def _symbols() -> _Symbols:
    kappa, w = _state_symbols()
    p = _params()
    n = {k: p[f"n_{k}"] for k in CLASSES}
    n_total = sum(n.values())
    return _Symbols(
        kappa=kappa,
        w=w,
        p=p,
        n=n,
        unused_answers=p["K_A"] - (n["C"] + n["CS"] + n["S"] + 2 * n["AUG"]),
        unused_subjects=p["K_S"] - n_total,
    )


def _shared_of(slot: str) -> str:
    return "thS" if _is_subject(slot) else "thC"


# ---- Lemma 3 and the orbit sizes ---------------------------------------------------------------------------


def _lemma3_entries(s: _Symbols) -> dict:
    """Lemma 3's table entries V[c, c] and V[a, s] in closed form."""
    p = s.p
    z_norm = (p["K_A"] - 1) * sp.exp(p["o_c"]) + sp.exp(p["o_r"]) + p["K_S"]
    return dict(
        lam_c=sp.log(p["delta_c"] / (1 - p["delta_c"])) + sp.log(z_norm),
        lam_m=sp.log(p["delta_m"] / (1 - p["delta_m"])) + sp.log(z_norm),
    )


def _orbit_sizes(s: _Symbols) -> dict:
    """|O| of every state symbol: the number of matrix entries its orbit indicator B_O covers."""
    n = s.n
    untrained = {"nA": s.unused_answers, "nS": s.unused_subjects}
    orbit_size = {}
    for key, sym in s.kappa.items():
        orbit_size[sym] = n[key[1]] if key[0] == "own" else sp.Integer(1)
    for (row, col), sym in s.w.items():
        if col[0] == "own":
            k = col[1]
            if row[0] == "same":
                per_column = sp.Integer(1)
            elif row[0] == "other":
                per_column = n[row[1]] - (1 if row[1] == k else 0)
            else:
                per_column = untrained.get(row[0], sp.Integer(1))
            orbit_size[sym] = n[k] * per_column
        else:
            orbit_size[sym] = n[row[1]] if row[0] == "train" else untrained.get(row[0], sp.Integer(1))
    return dict(orbit_size=orbit_size)


# ---- attention: scores u = phi(y)^T q, then softmax over the input ----------------------------------------


def _scores(s: _Symbols) -> dict:
    """Attention scores u(kappa) of each group's input slots (the probe sees the shared components only)."""
    kappa = s.kappa
    score_expr = {}
    for k in CLASSES:
        u = {
            rho: SQRT_HALF * (kappa[("own", k, rho)] + kappa[("shared", _shared_of(rho))])
            for rho in INPUT_SLOTS[k]
        }
        u["r"] = kappa[("shared", "er")]
        score_expr[k] = u
    score_expr["probe"] = {
        "c": SQRT_HALF * kappa[("shared", "thC")],
        "s": SQRT_HALF * kappa[("shared", "thS")],
        "r": kappa[("shared", "er")],
    }
    return score_expr


def _attention(s: _Symbols) -> dict:
    """Scores, the softmax in the score symbols and its Jacobian in the attention symbols."""
    groups = (*CLASSES, "probe")
    att_shift = {g: sp.Symbol(f"ashift_{g}", real=True) for g in groups}
    score_expr = _scores(s)
    score_sym = {g: {y: sp.Symbol(f"u_{g}_{y}", real=True) for y in score_expr[g]} for g in groups}
    attention_expr = {g: _softmax(score_sym[g], att_shift[g]) for g in groups}
    attention_sym = {g: {y: sp.Symbol(f"sigma_{g}_{y}", real=True) for y in score_expr[g]} for g in groups}
    # The softmax Jacobian d sigma_y / d u_v, by sympy, then written in the sigma symbols: it is homogeneous
    # of degree 0 in the exponentials, so exp(u_y - shift) -> sigma_y is exact, and sum(sigma) = 1.
    attention_jacobian_expr, attention_jacobian_sym = {}, {}
    for g in groups:
        positive = {y: sp.Symbol(f"P_{y}", positive=True) for y in score_sym[g]}
        to_log = {score_sym[g][y]: sp.log(positive[y]) + att_shift[g] for y in score_sym[g]}
        to_sigma = {positive[y]: attention_sym[g][y] for y in score_sym[g]}
        sigma_sum = sum(attention_sym[g].values())
        for y in score_sym[g]:
            for v in score_sym[g]:
                d = sp.diff(attention_expr[g][y], score_sym[g][v]).subs(to_log).subs(to_sigma)
                d = sp.factor(d).subs(sigma_sum, 1)
                attention_jacobian_expr[(g, y, v)] = d
                attention_jacobian_sym[(g, y, v)] = sp.Symbol(f"J_{g}_{y}_{v}", real=True)
    return dict(
        score_expr=score_expr,
        score_sym=score_sym,
        att_shift=att_shift,
        attention_expr=attention_expr,
        attention_sym=attention_sym,
        attention_jacobian_expr=attention_jacobian_expr,
        attention_jacobian_sym=attention_jacobian_sym,
    )


# ---- value logits by role -------------------------------------------------------------------------------------


def _phi_rows(kind, role) -> dict:
    """Row directions (and coefficients) of phi(token) for a token of the given role."""
    if kind == "relation":
        return {("er",): sp.Integer(1)}
    return {role: SQRT_HALF, (("thS",) if kind == "subject" else ("thC",)): SQRT_HALF}


def _value0(s: _Symbols, k, token, input_slot):
    """Pretrained table V0[token, input token] for class k's representative point (SPEC §3)."""
    p = s.p
    kind, role = token
    if kind == "relation":
        return p["o_r"]
    if kind == "subject":
        return sp.Integer(0)
    if input_slot != "r" and role == ("same", input_slot) and input_slot in SELF_COPY[k]:
        return p["lambda_C"]
    if input_slot != "r" and role[0] == "same" and FACTS[k].get(input_slot) == role[1]:
        return p["lambda_M"]
    return p["o_c"]


def _roles_of(s: _Symbols, k) -> dict:
    """Token roles seen by class k's representative point, with their multiplicities."""
    n = s.n
    roles = {}
    for sigma in SLOTS[k]:
        roles[("subject" if _is_subject(sigma) else "answer", ("same", sigma))] = sp.Integer(1)
    for other in CLASSES:
        for sigma in SLOTS[other]:
            kind = "subject" if _is_subject(sigma) else "answer"
            roles[(kind, ("other", other, sigma))] = n[other] - (1 if other == k else 0)
    roles[("answer", ("nA",))] = s.unused_answers
    roles[("subject", ("nS",))] = s.unused_subjects
    roles[("relation", ("r",))] = sp.Integer(1)
    return roles


def _logit(s: _Symbols, k, token, alpha):
    """z[token] = V0[token, :] alpha + phi(token)^T Delta h, h = sum_y alpha_y phi(y) (own point)."""
    z = sum(alpha[y] * _value0(s, k, token, y) for y in alpha)
    cols = {}
    for y, a in alpha.items():
        if y == "r":
            cols[("shared", "er")] = cols.get(("shared", "er"), 0) + a
        else:
            cols[("own", k, y)] = cols.get(("own", k, y), 0) + SQRT_HALF * a
            sh = ("shared", _shared_of(y))
            cols[sh] = cols.get(sh, 0) + SQRT_HALF * a
    for row, rc in _phi_rows(*token).items():
        for col, cc in cols.items():
            z += rc * cc * s.dw(k, row, col)
    return sp.expand(z)


def _token_name(token) -> str:
    return "_".join(str(x) for x in (token[1] if isinstance(token, tuple) else (token,)))


def _value_logits(s: _Symbols, attention_sym: dict) -> dict:
    """Each class's role logits (bilinear in attention and the w), their symbols and multiplicities, its
    target role, and (classes with a context) the value logits of its own context and subject."""
    logit_expr, logit_sym, column_expr, multiplicity, targets = {}, {}, {}, {}, {}
    for k in CLASSES:
        roles = _roles_of(s, k)
        logit_expr[k] = {t: _logit(s, k, t, attention_sym[k]) for t in roles}
        logit_sym[k] = {t: sp.Symbol(f"z_{k}_{_token_name(t)}", real=True) for t in roles}
        multiplicity[k] = roles
        targets[k] = ("subject" if _is_subject(TARGET[k]) else "answer", ("same", TARGET[k]))
        if "c" in INPUT_SLOTS[k]:
            column_expr[k] = {y: {t: _logit(s, k, t, {y: sp.Integer(1)}) for t in roles} for y in ("c", "s")}
    return dict(
        logit_expr=logit_expr,
        logit_sym=logit_sym,
        column_expr=column_expr,
        multiplicity=multiplicity,
        targets=targets,
    )


# ---- losses and margins ---------------------------------------------------------------------------------------


def _role_weights(zs: dict, multiplicity: dict, shift) -> dict:
    """Unnormalised softmax weight of each role (its multiplicity times exp(z - shift))."""
    return {t: m * sp.exp(zs[t] - shift) for t, m in multiplicity.items()}


def _losses(s: _Symbols, logits: dict) -> dict:
    """Class losses (cross-entropy over roles with multiplicity) and their logit derivatives, and the
    training loss as the class-size-weighted mean of the class-loss symbols."""
    logit_shift = {g: sp.Symbol(f"zshift_{g}", real=True) for g in (*CLASSES, "probe")}
    class_loss, loss_grad_sym, loss_grad_expr = {}, {}, {}
    for k in CLASSES:
        zs = logits["logit_sym"][k]
        weights = _role_weights(zs, logits["multiplicity"][k], logit_shift[k])
        class_loss[k] = sp.log(sum(weights.values())) + logit_shift[k] - zs[logits["targets"][k]]
        loss_grad_sym[k] = {t: sp.Symbol(f"g_{k}_{_token_name(t)}", real=True) for t in zs}
        loss_grad_expr[k] = {t: sp.diff(class_loss[k], zs[t]) for t in zs}
    class_loss_sym = {k: sp.Symbol(f"loss_{k}", real=True) for k in CLASSES}
    return dict(
        logit_shift=logit_shift,
        class_loss=class_loss,
        loss=sum(s.n[k] * class_loss_sym[k] for k in CLASSES) / sum(s.n.values()),
        class_loss_sym=class_loss_sym,
        loss_grad_sym=loss_grad_sym,
        loss_grad_expr=loss_grad_expr,
    )


def _margins(logits: dict, logit_shift: dict) -> dict:
    """Lemma 2's margin <v(c) - v(s), e_target - softmax(z)> of each class with a context, summed over roles
    with multiplicity, in the logit symbols and the symbols ``vc``, ``vs`` of the two value-logit columns."""
    margin = {}
    for k in logits["column_expr"]:
        zs, target = logits["logit_sym"][k], logits["targets"][k]
        weights = _role_weights(zs, logits["multiplicity"][k], logit_shift[k])
        z_total = sum(weights.values())
        vc = {t: sp.Symbol(f"vc_{k}_{_token_name(t)}", real=True) for t in zs}
        vs = {t: sp.Symbol(f"vs_{k}_{_token_name(t)}", real=True) for t in zs}
        margin[k] = (
            sum((vc[t] - vs[t]) * ((1 if t == target else 0) * z_total - weights[t]) for t in zs) / z_total,
            vc,
            vs,
        )
    return dict(margin=margin)


# ---- the counterfactual probe [c*, s*, r] ---------------------------------------------------------------------


def _probe_roles(s: _Symbols) -> tuple[dict, dict]:
    """The probe's token roles (name -> (kind, role)) and their multiplicities."""
    probe_roles = {
        "c*": ("answer", ("nA",)),
        "a*": ("answer", ("nA",)),
        "s*": ("subject", ("nS",)),
        "nA": ("answer", ("nA",)),
        "nS": ("subject", ("nS",)),
        "r": ("relation", ("r",)),
    }
    probe_multiplicity = {
        "c*": sp.Integer(1),
        "a*": sp.Integer(1),
        "s*": sp.Integer(1),
        "nA": s.unused_answers - 2,
        "nS": s.unused_subjects - 1,
        "r": sp.Integer(1),
    }
    for other in CLASSES:
        for sigma in SLOTS[other]:
            probe_roles[(other, sigma)] = (
                "subject" if _is_subject(sigma) else "answer",
                ("train", other, sigma),
            )
            probe_multiplicity[(other, sigma)] = s.n[other]
    return probe_roles, probe_multiplicity


def _probe(s: _Symbols, a: dict) -> dict:
    """The probe's role logits in its attention symbols ``a`` (c* self-copies, a* is s*'s memorized fact)."""
    p = s.p
    probe_roles, probe_multiplicity = _probe_roles(s)
    probe_cols = {
        ("shared", "thC"): SQRT_HALF * a["c"],
        ("shared", "thS"): SQRT_HALF * a["s"],
        ("shared", "er"): a["r"],
    }
    probe_logit_expr = {}
    for name, (kind, role) in probe_roles.items():
        if kind == "relation":
            z = p["o_r"] * (a["c"] + a["s"] + a["r"])
        elif kind == "subject":
            z = sp.Integer(0)
        else:
            z = (p["lambda_C"] if name == "c*" else p["o_c"]) * a["c"]
            z += (p["lambda_M"] if name == "a*" else p["o_c"]) * a["s"] + p["o_c"] * a["r"]
        for row, rc in _phi_rows(kind, role).items():
            for col, cc in probe_cols.items():
                z += rc * cc * s.dw(None, row, col)
        probe_logit_expr[name] = sp.expand(z)
    return dict(probe_logit_expr=probe_logit_expr, probe_multiplicity=probe_multiplicity)


@functools.lru_cache(maxsize=1)
def reduced_model() -> ReducedModel:
    """Build the class-level forward pass and loss and differentiate them (about a second; cached).

    Stages: Lemma 3's entries and the orbit sizes, attention (scores, softmax, Jacobian), value logits by
    role, class losses, margins, and the probe.
    """
    s = _symbols()
    attention = _attention(s)
    logits = _value_logits(s, attention["attention_sym"])
    losses = _losses(s, logits)
    return ReducedModel(
        state=(*s.kappa.values(), *s.w.values()),
        kappa=s.kappa,
        w=s.w,
        params=s.p,
        **_lemma3_entries(s),
        **_orbit_sizes(s),
        **attention,
        **logits,
        **losses,
        **_margins(logits, losses["logit_shift"]),
        **_probe(s, attention["attention_sym"]["probe"]),
    )


@functools.cache
def symbolic_gradient(symbol: sp.Symbol) -> sp.Expr:
    """dL/dtheta for one state symbol, by sympy, in the stage symbols (loss, logit and attention symbols).

    Chain rule through the stages: L <- class losses <- role logits z (bilinear in sigma and w) <- attention
    sigma (softmax Jacobian ``J``) <- scores u (linear in kappa).
    """
    m = reduced_model()
    is_kappa = symbol in set(m.kappa.values())
    total = sp.Integer(0)
    for k in CLASSES:
        term = sp.Integer(0)
        for t, z in m.logit_expr[k].items():
            if is_kappa:
                dz = sum(
                    sp.diff(z, m.attention_sym[k][y])
                    * sum(
                        m.attention_jacobian_sym[(k, y, v)] * sp.diff(m.score_expr[k][v], symbol)
                        for v in m.score_expr[k]
                    )
                    for y in m.attention_sym[k]
                )
            else:
                dz = sp.diff(z, symbol)
            if dz != 0:
                term += m.loss_grad_sym[k][t] * dz
        total += sp.diff(m.loss, m.class_loss_sym[k]) * term
    return total
