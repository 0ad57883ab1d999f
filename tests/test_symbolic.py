"""The symbolic layer: orbit bookkeeping, Lemma 3 identities, and the full sympy chain-rule gradient."""

import jax.numpy as jnp
import numpy as np
import sympy as sp

import cpi_theory as cpi
from cpi_theory.reduced._compiled import _compiled, _forward, reduced_loss_and_gradient
from cpi_theory.reduced._symbolic import CLASSES, reduced_model, symbolic_gradient


def test_orbits_tile_every_column_of_w_v():
    """For every column direction the orbits' rows cover all d = K_S + K_A + 3 row directions exactly once."""
    m = reduced_model()
    p = m.params
    d = p["K_S"] + p["K_A"] + 3
    columns = {}
    for (_row, col), sym in m.w.items():
        columns.setdefault(col, []).append(sym)
    assert len(columns) == 7 + 3
    for col, syms in columns.items():
        per_column = sum(m.orbit_size[s] for s in syms)
        if col[0] == "own":
            per_column = per_column / p[f"n_{col[1]}"]
        assert sp.simplify(per_column - d) == 0, col


def test_lemma3_entries_encode_the_probabilities():
    m = reduced_model()
    p = m.params
    rest = (p["K_A"] - 1) * sp.exp(p["o_c"]) + sp.exp(p["o_r"]) + p["K_S"]
    for lam, delta in ((m.lam_c, p["delta_c"]), (m.lam_m, p["delta_m"])):
        assert sp.simplify(sp.exp(lam) / (sp.exp(lam) + rest) - delta) == 0


def test_symbolic_chain_rule_gradient_equals_the_engine():
    """The fully symbolic dL/dtheta (sympy chain rule) evaluated numerically = the engine's tensor path."""
    cfg = cpi.Config(n_subject_only=3, n_counterfactual_augmented=2, o_c=0.2, o_r=-0.4)
    params = cpi.reduced_params(cfg)
    m = reduced_model()
    rng = np.random.default_rng(0)
    state = jnp.asarray(rng.normal(scale=0.3, size=len(m.state)))
    _, grad = reduced_loss_and_gradient(state, params)
    params = cpi.reduced.symbol_values(
        params
    )  # the derivation's names, as the compiled forward pass takes them
    fw = _forward(state, params, CLASSES)
    c = _compiled()
    env = {s: sp.Float(float(v)) for s, v in zip(m.state, np.asarray(state), strict=True)}
    for key in ("n_C", "n_CS", "n_S", "n_AUG", "K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m"):
        env[m.params[key]] = sp.Float(float(params[key]))
    lam = c.lam_fn(*[params[k] for k in ("K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m")])
    env[m.params["lambda_C"]], env[m.params["lambda_M"]] = sp.Float(float(lam[0])), sp.Float(float(lam[1]))
    for k in CLASSES:
        grp, f = c.groups[k], fw.classes[k]
        for i, y in enumerate(grp.slots):
            env[m.attention_sym[k][y]] = sp.Float(float(f.sigma[i]))
        for i, t in enumerate(grp.roles):
            env[m.loss_grad_sym[k][t]] = sp.Float(float(f.dloss_dz[i]))
        for (g, y, v), sym in m.attention_jacobian_sym.items():
            if g == k:
                env[sym] = sp.Float(float(m.attention_jacobian_expr[(g, y, v)].xreplace(env)))
    names = list(m.state)
    for sym in (
        m.kappa[("shared", "thC")],
        m.kappa[("own", "AUG", "s")],
        m.w[(("same", "c"), ("own", "C", "c"))],
        m.w[(("nA",), ("shared", "er"))],
        m.w[(("other", "S", "a"), ("own", "CS", "s"))],
    ):
        expected = float(symbolic_gradient(sym).xreplace(env))
        assert abs(expected - float(grad[names.index(sym)])) < 1e-12 * max(1.0, abs(expected)), sym
