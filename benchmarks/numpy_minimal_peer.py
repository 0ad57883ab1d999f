"""A hand-written vectorized NumPy peer of the minimal reduced engine at lr_v = 0 (classes C and C+S).

It is the speed peer of ``benchmarks/bench_minimal.py`` and, being derived by hand from SPEC.md (not from the
sympy model or its generated code), an independent check of ``cpi_theory.reduced.minimal_train``
(tests/test_numpy_minimal_peer.py).

The derivation (SPEC.md §§1-4, 6), W_V frozen. Only q = W_KQ phi(r) matters, and every update of q lies in
the span of the training tokens' embeddings, so by symmetry

    q = sum_{C points} (kappa_C_c c~ + kappa_C_s s~) + sum_{C+S points} (kappa_CS_c c~ + kappa_CS_s s~)
        + kappa_thS theta_S + kappa_thC theta_C + kappa_er e_r,

initially kappa_er = relation_score and the rest 0. The attention scores of a point of class k are

    u_c = sqrt(1/2) (kappa_k_c + kappa_thC),  u_s = sqrt(1/2) (kappa_k_s + kappa_thS),  u_r = kappa_er,

and the probe [c*, s*, r] (its tokens unseen in training) has the same with kappa_k_* = 0. Every value
column v(y) of a point's tokens is the base column (o_c on every answer, o_r on r, 0 on subjects) plus an
extra e_y on the point's target c only: e_c = lambda_C - o_c, e_s = lambda_M - o_c for a C+S subject (its
memorized answer is c) and 0 for a C subject, e_r = 0 (lambda_C, lambda_M: Lemma 3's table entries). So the
logits are the base plus ebar = sum_y sigma_y e_y on the target, and with Z = K_S + (K_A - 1) e^o_c + e^o_r
(the other K - 1 tokens' exp-logits)

    p_t = sigmoid(ebar - (log Z - o_c)).

The exact per-entry gradient: dL/dsigma_y = <v(y), p - e_t> = const + e_y (p_t - 1), hence
dL/du_y = sigma_y (p_t - 1) (e_y - ebar). The gradient of W_KQ is sum_y dL/du_y phi(y) phi(r)^T and
|phi(r)| = 1, so with w = lr_kq / (n_C + n_CS) and g_{k,y} = w sigma_y (1 - p_t) (e_y - ebar) for class k:

    kappa_k_c += sqrt(1/2) g_{k,c},         kappa_thC += sqrt(1/2) (n_C g_{C,c} + n_CS g_{CS,c}),
    kappa_k_s += sqrt(1/2) g_{k,s},         kappa_thS += sqrt(1/2) (n_C g_{C,s} + n_CS g_{CS,s}),
    kappa_er  += n_C g_{C,r} + n_CS g_{CS,r}.

On the probe, z_c* - z_a* = sigma_c (lambda_C - o_c) - sigma_s (lambda_M - o_c) and M_C = sigmoid of it.

Implementation: the state is kept as scores, ``U_c``, ``U_s`` of shape (3, B) for the rows (C, C+S, probe)
and ``U_r`` of shape (B,), so the two classes and the probe share each NumPy call: the probe is a third row
with extras e_c = lambda_C - o_c, e_s = -(lambda_M - o_c) and offset 0, so that its "p_t" is M_C. Updates:
U_c[k] += (1/2) g_{k,c} + (1/2) sum_l n_l g_{l,c} (the probe row: only the sum), likewise U_s, and
U_r += sum_l n_l g_{l,r}. Runs are processed in blocks of ``block`` so the ~15 buffers stay in cache; every
operation writes into a preallocated buffer. All arithmetic is elementwise, so BLAS (and its threads) plays
no part.
"""

import math

import numpy as np

SQRT2 = math.sqrt(2.0)
PARAM_KEYS = ("n_C", "n_CS", "K_A", "K_S", "o_c", "o_r", "delta_c", "delta_m", "relation_score", "lr_kq")
# The coordinates of q (names as in SPEC.md §6 / cpi_theory.reduced): ``final_state`` columns.
STATE_NAMES = ("kappa_C_c", "kappa_C_s", "kappa_CS_c", "kappa_CS_s", "kappa_thS", "kappa_thC", "kappa_er")
DEFAULT_BLOCK = 4096


def peer_inputs(params) -> dict[str, np.ndarray]:
    """This peer's inputs from a ``cpi_theory.ToyParams`` (one run or columns), read attribute by attribute:
    the peer itself stays plain NumPy in the paper's symbols."""
    sizes = params.class_sizes
    values = {
        "n_C": sizes.context_critical,
        "n_CS": sizes.non_context_critical,
        "n_S": sizes.subject_only,
        "n_AUG": sizes.counterfactual_augmented,
        "K_A": params.n_answers,
        "K_S": params.n_subjects,
        **{
            k: getattr(params, k)
            for k in ("o_c", "o_r", "delta_c", "delta_m", "relation_score", "lr_kq", "lr_v")
        },
        "context_bias": params.context_bias,
    }
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}


def _parameters(params: dict) -> dict[str, np.ndarray]:
    """The parameters as float64 arrays of one common shape (R,); rejects what this peer does not model."""
    for key in ("lr_v", "n_S", "n_AUG"):
        if key in params and np.any(np.asarray(params[key]) != 0):
            raise ValueError(f"numpy peer: models lr_v = n_S = n_AUG = 0 only; {key} is not 0")
    keys = (*PARAM_KEYS, "context_bias")
    values = [params[k] for k in PARAM_KEYS] + [params.get("context_bias", 0.0)]
    arrays = np.broadcast_arrays(*[np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values])
    if arrays[0].ndim != 1:
        raise ValueError(f"numpy peer: parameters must be scalars or of shape (R,), got {arrays[0].shape}")
    return {k: np.ascontiguousarray(a) for k, a in zip(keys, arrays, strict=True)}


def _constants(p: dict[str, np.ndarray]):
    """Per run: the extras of the three rows (C, C+S, probe), the offsets and the class weights."""
    log_z = np.log(p["K_S"] + (p["K_A"] - 1.0) * np.exp(p["o_c"]) + np.exp(p["o_r"]))
    lambda_c = np.log(p["delta_c"] / (1.0 - p["delta_c"])) + log_z  # V[c, c]
    lambda_m = np.log(p["delta_m"] / (1.0 - p["delta_m"])) + log_z  # V[a, s] of a memorized fact
    e_c = lambda_c - p["o_c"]  # (R,): the same in all three rows
    e_m = lambda_m - p["o_c"]
    e_s = np.stack([np.zeros_like(e_m), e_m, -e_m])  # C subject: no extra; probe: z_c* - z_a*
    offset = np.stack([log_z - p["o_c"], log_z - p["o_c"], np.zeros_like(log_z)])
    w = p["lr_kq"] / (p["n_C"] + p["n_CS"])
    half_w = 0.5 * w
    n = np.stack([p["n_C"], p["n_CS"]])
    return e_c, e_s, offset, half_w, n


def _block(p, e_c, e_s, offset, half_w, n, steps, out, lo, hi, trajectory):
    """Run the runs lo:hi for ``steps`` steps; writes the summaries (and M_C curve) into ``out``."""
    b = hi - lo
    e_c, e_s, offset, half_w, n = e_c[lo:hi], e_s[:, lo:hi], offset[:, lo:hi], half_w[lo:hi], n[:, lo:hi]
    e_c2 = np.ascontiguousarray(np.broadcast_to(e_c, (2, b)))
    e_s2 = np.ascontiguousarray(e_s[:2])
    # state: scores of context, subject (rows C, C+S, probe) and of r
    beta = p["context_bias"][lo:hi]
    u_c = np.empty((3, b))
    u_s = np.empty((3, b))
    u_c[:] = 0.5 * beta
    u_s[:] = -0.5 * beta
    u_r = p["relation_score"][lo:hi].copy()
    # buffers
    mx, sc, ss, sr, tot, ebar, tmp = (np.empty((3, b)) for _ in range(7))
    g, a_c, a_s, a_r = (np.empty((2, b)) for _ in range(4))
    mc, s1, s2 = (np.empty(b) for _ in range(3))
    start, peak, final = out["start"][lo:hi], out["peak"][lo:hi], out["final"][lo:hi]
    peak_step = out["peak_step"][lo:hi]
    peak[:] = -np.inf
    peak_step[:] = 0
    better = np.empty(b, dtype=bool)
    curve = out["context_reliance"][:, lo:hi] if trajectory else None

    def forward():
        np.maximum(u_c, u_s, out=mx)
        np.maximum(mx, u_r, out=mx)
        np.subtract(u_c, mx, out=sc)
        np.exp(sc, out=sc)
        np.subtract(u_s, mx, out=ss)
        np.exp(ss, out=ss)
        np.subtract(u_r, mx, out=sr)
        np.exp(sr, out=sr)
        np.add(sc, ss, out=tot)
        np.add(tot, sr, out=tot)
        np.reciprocal(tot, out=tot)
        np.multiply(sc, tot, out=sc)  # sigma_c
        np.multiply(ss, tot, out=ss)  # sigma_s
        np.multiply(sr, tot, out=sr)  # sigma_r
        np.multiply(sc, e_c, out=ebar)
        np.multiply(ss, e_s, out=tmp)
        np.add(ebar, tmp, out=ebar)  # ebar; on the probe row: z_c* - z_a*
        np.subtract(ebar, offset, out=tmp)
        np.exp(tmp, out=tmp)
        np.add(tmp, 1.0, out=tmp)
        np.reciprocal(tmp, out=tmp)  # 1 - p_t; probe row: 1 - M_C
        np.subtract(1.0, tmp[2], out=mc)

    for t in range(steps):
        forward()
        if t == 0:
            start[:] = mc
        np.greater(mc, peak, out=better)
        np.copyto(peak, mc, where=better)
        np.copyto(peak_step, t, where=better)
        if curve is not None:
            curve[t] = mc
        np.multiply(tmp[:2], half_w, out=g)  # (w / 2)(1 - p_t)
        ebar2 = ebar[:2]
        np.subtract(e_c2, ebar2, out=a_c)
        a_c *= sc[:2]
        a_c *= g
        np.subtract(e_s2, ebar2, out=a_s)
        a_s *= ss[:2]
        a_s *= g
        np.multiply(ebar2, sr[:2], out=a_r)
        a_r *= g  # -(1/2) g_{k,r}
        # shared directions: sums over the classes weighted by their sizes
        np.multiply(n[0], a_c[0], out=s1)
        np.multiply(n[1], a_c[1], out=s2)
        s1 += s2
        u_c[:2] += a_c
        u_c += s1
        np.multiply(n[0], a_s[0], out=s1)
        np.multiply(n[1], a_s[1], out=s2)
        s1 += s2
        u_s[:2] += a_s
        u_s += s1
        np.multiply(n[0], a_r[0], out=s1)
        np.multiply(n[1], a_r[1], out=s2)
        s1 += s2
        s1 *= 2.0
        u_r -= s1
    forward()
    final[:] = mc
    if steps == 0:
        start[:] = mc
    np.greater(mc, peak, out=better)
    np.copyto(peak, mc, where=better)
    np.copyto(peak_step, steps, where=better)
    if curve is not None:
        curve[steps] = mc
    fs = out["final_state"][lo:hi]
    fs[:, 0] = SQRT2 * (u_c[0] - u_c[2])
    fs[:, 1] = SQRT2 * (u_s[0] - u_s[2])
    fs[:, 2] = SQRT2 * (u_c[1] - u_c[2])
    fs[:, 3] = SQRT2 * (u_s[1] - u_s[2])
    fs[:, 4] = SQRT2 * u_s[2]
    fs[:, 5] = SQRT2 * u_c[2]
    fs[:, 6] = u_r


def run_numpy(
    params: dict[str, np.ndarray], steps: int, *, trajectory: bool = False, block: int = DEFAULT_BLOCK
) -> dict:
    """``steps`` exact full-batch GD steps (lr_v = 0, classes C and C+S) of each of R runs.

    ``params``: arrays of shape (R,) (or scalars) for :data:`PARAM_KEYS` (``lr_v``, ``n_S``, ``n_AUG``, if
    present, must be 0; ``context_bias`` optional, default 0). Returns ``start``, ``peak`` (the first
    maximum), ``peak_step``, ``final`` of M_C over steps 0..steps (each (R,)) and ``final_state`` ((R, 7),
    :data:`STATE_NAMES` order); with ``trajectory=True`` also ``context_reliance`` ((steps + 1, R)).
    Memory: O(R) (plus the curve if asked for). A class of size 0 has no points: its own coordinates
    (``kappa_C_*`` when n_C = 0) then follow a weightless point of that class and mean nothing (the generated
    engine moves them differently); M_C and the shared coordinates do not depend on them.
    """
    if steps < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    p = _parameters(params)
    r = p["n_C"].shape[0]
    e_c, e_s, offset, half_w, n = _constants(p)
    out = {
        "start": np.empty(r),
        "peak": np.empty(r),
        "peak_step": np.empty(r, dtype=np.int64),
        "final": np.empty(r),
        "final_state": np.empty((r, len(STATE_NAMES))),
    }
    if trajectory:
        out["context_reliance"] = np.empty((steps + 1, r))
    with np.errstate(over="ignore"):
        for lo in range(0, r, block):
            _block(p, e_c, e_s, offset, half_w, n, steps, out, lo, min(lo + block, r), trajectory)
    return out
