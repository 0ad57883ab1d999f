"""A plain NumPy implementation of the toy model, one training point at a time, with hand-written gradients.

It is the speed baseline of the benchmarks and, being written independently of the JAX code (no autodiff),
a correctness check of it (tests/test_numpy_baseline.py).
"""

import numpy as np


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def numpy_problem(config):
    """Embeddings, pretrained W_KQ, W_V and the points, from the package's world builder (data only)."""
    import cpi_theory as cpi

    world = cpi.build_world(config)
    state = cpi.pretrained_state(world, config.relation_score)
    points = [
        (int(c) if bool(h) else None, int(s), int(t))
        for c, s, t, h in zip(world.context, world.subject, world.target, world.has_context, strict=True)
    ]
    probe = (int(world.probe_context), int(world.probe_subject), int(world.probe_memorized))
    return np.asarray(world.embeddings), np.asarray(state.w_kq), np.asarray(state.w_v), points, probe


def numpy_simulate(config, problem=None):
    """Exact full-batch GD, looping over points in Python; returns M_C and the loss at every step."""
    phi, w_kq, w_v, points, probe = problem if problem is not None else numpy_problem(config)
    w_kq, w_v = w_kq.copy(), w_v.copy()
    r = phi.shape[1] - 1
    phi_r = phi[:, r]
    n = len(points)

    def point(c, s, w_kq, w_v):
        tokens = [s, r] if c is None else [c, s, r]
        x = phi[:, tokens]  # d x L
        q = w_kq @ phi_r
        sigma = _softmax(x.T @ q)
        h = x @ sigma
        p = _softmax(phi.T @ (w_v @ h))
        return x, sigma, h, p

    def context_reliance(w_kq, w_v):
        c, s, a = probe
        _, _, _, p = point(c, s, w_kq, w_v)
        return p[c] / (p[c] + p[a])

    mc, losses = [context_reliance(w_kq, w_v)], []
    for _ in range(config.steps):
        g_kq = np.zeros_like(w_kq)
        g_v = np.zeros_like(w_v)
        loss = 0.0
        for c, s, t in points:
            x, sigma, h, p = point(c, s, w_kq, w_v)
            loss -= np.log(p[t])
            dz = p.copy()
            dz[t] -= 1.0  # dL/dz
            back = phi @ dz  # dL/d(W_V h)
            g_v += np.outer(back, h)
            dsigma = x.T @ (w_v.T @ back)  # dL/dsigma_y = <v(y), p - e_t>
            du = sigma * (dsigma - sigma @ dsigma)
            g_kq += np.outer(x @ du, phi_r)
        losses.append(loss / n)
        w_kq = w_kq - config.lr_kq * g_kq / n
        w_v = w_v - config.lr_v * g_v / n
        mc.append(context_reliance(w_kq, w_v))
    return np.array(mc), np.array(losses)
