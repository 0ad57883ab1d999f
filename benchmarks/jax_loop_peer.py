"""The plain JAX loop a user would write for the frozen regime (W_V frozen, C and C+S points): the speed peer
of the minimal engine (``benchmarks/bench_minimal.py``, ``benchmarks/gpu_check.py``).

Derived by hand from SPEC.md, like ``numpy_minimal_peer.py`` (see its docstring for the algebra), with a
five-scalar state per run: the private score coefficients of the C and C+S points on their context and
subject (``p_C_c, p_C_s, p_CS_c, p_CS_s``) and the relation score ``u_r``. The shared directions follow from
them (the shared score of contexts is ``beta / 2 + n_C p_C_c + n_CS p_CS_c``, of subjects likewise with
``-beta / 2``): both grow by the class-weighted sum of the private steps. One ``lax.fori_loop`` per run,
M_C probed at every step (start, first maximum and its step, final), ``jax.vmap`` over runs.
"""

import jax
import jax.numpy as jnp

SUMMARY = ("start", "peak", "peak_step", "final")


def _attention(u_c, u_s, u_r):
    top = jnp.maximum(jnp.maximum(u_c, u_s), u_r)
    e_c, e_s, e_r = jnp.exp(u_c - top), jnp.exp(u_s - top), jnp.exp(u_r - top)
    inverse = 1.0 / (e_c + e_s + e_r)
    return e_c * inverse, e_s * inverse, e_r * inverse


def run_one(p: dict, steps: int):
    """(start, peak, peak_step, final) of M_C over steps 0..steps of one run; ``p`` in the paper's symbols
    (``n_C, n_CS, K_A, K_S, o_c, o_r, delta_c, delta_m, relation_score, lr_kq, context_bias``)."""
    n_c, n_cs, beta = p["n_C"], p["n_CS"], p["context_bias"]
    log_z = jnp.log(p["K_S"] + (p["K_A"] - 1.0) * jnp.exp(p["o_c"]) + jnp.exp(p["o_r"]))
    e_c = jnp.log(p["delta_c"] / (1.0 - p["delta_c"])) + log_z - p["o_c"]  # a context's extra on its target
    e_m = jnp.log(p["delta_m"] / (1.0 - p["delta_m"])) + log_z - p["o_c"]  # a memorized subject's extra
    offset = log_z - p["o_c"]
    half_w = 0.5 * p["lr_kq"] / (n_c + n_cs)

    def reliance(state):
        p_cc, p_cs, p_sc, p_ss, u_r = state
        shared_c = 0.5 * beta + n_c * p_cc + n_cs * p_sc
        shared_s = -0.5 * beta + n_c * p_cs + n_cs * p_ss
        s_c, s_s, _ = _attention(shared_c, shared_s, u_r)  # the probe's tokens are unseen: shared scores only
        return jax.nn.sigmoid(s_c * e_c - s_s * e_m), shared_c, shared_s

    def row(u_c, u_s, u_r, e_s):
        """One class's private steps (context, subject) and its relation term, per unit class size."""
        s_c, s_s, s_r = _attention(u_c, u_s, u_r)
        ebar = s_c * e_c + s_s * e_s
        g = half_w / (1.0 + jnp.exp(ebar - offset))  # (w / 2)(1 - p_target)
        return s_c * (e_c - ebar) * g, s_s * (e_s - ebar) * g, s_r * ebar * g

    def body(t, carry):
        state, start, peak, peak_step = carry
        p_cc, p_cs, p_sc, p_ss, u_r = state
        mc, shared_c, shared_s = reliance(state)
        start = jnp.where(t == 0, mc, start)
        better = mc > peak
        peak, peak_step = jnp.where(better, mc, peak), jnp.where(better, t, peak_step)
        a_cc, a_cs, a_cr = row(p_cc + shared_c, p_cs + shared_s, u_r, 0.0)
        a_sc, a_ss, a_sr = row(p_sc + shared_c, p_ss + shared_s, u_r, e_m)
        state = (p_cc + a_cc, p_cs + a_cs, p_sc + a_sc, p_ss + a_ss, u_r - 2.0 * (n_c * a_cr + n_cs * a_sr))
        return state, start, peak, peak_step

    zero = jnp.zeros_like(log_z)
    state0 = (zero, zero, zero, zero, p["relation_score"] + zero)
    carry = (state0, zero, zero - jnp.inf, jnp.zeros(jnp.shape(zero), jnp.int32))
    state, start, peak, peak_step = jax.lax.fori_loop(0, steps, body, carry)
    final, _, _ = reliance(state)
    start = final if steps == 0 else start
    better = final > peak
    return start, jnp.where(better, final, peak), jnp.where(better, steps, peak_step), final


def summaries(p: dict, steps: int):
    """:func:`run_one` vmapped over the leading axis of every entry of ``p`` (jit it with steps static)."""
    return jax.vmap(lambda q: run_one(q, steps))(p)
