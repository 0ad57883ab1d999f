"""Autodiff gradients vs the paper's closed form (Lemma 1-2) and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi


def closed_form_grad_w_kq(state, world):
    """Lemma 1: dL/dW_KQ = (1/n) sum_i sum_y sigma_iy (g_iy - sum_y' sigma_iy' g_iy') phi(y) phi(r)^T,
    with g_iy = <v(y), p_i - e_target_i>, written out in NumPy."""
    phi = np.asarray(world.embeddings)
    w_kq, w_v = np.asarray(state.w_kq), np.asarray(state.w_v)
    r = world.relation
    q = w_kq @ phi[:, r]
    grad = np.zeros_like(w_kq)
    n = world.n_points
    for i in range(n):
        tokens = [int(world.context[i]), int(world.subject[i]), r]
        if not bool(world.has_context[i]):
            tokens = tokens[1:]
        u = np.array([phi[:, y] @ q for y in tokens])
        sigma = np.exp(u - u.max())
        sigma /= sigma.sum()
        values = [phi.T @ w_v @ phi[:, y] for y in tokens]
        z = sum(s * v for s, v in zip(sigma, values, strict=True))
        p = np.exp(z - z.max())
        p /= p.sum()
        residual = p.copy()
        residual[int(world.target[i])] -= 1.0
        g = np.array([v @ residual for v in values])
        du = sigma * (g - sigma @ g)
        for y, d in zip(tokens, du, strict=True):
            grad += d * np.outer(phi[:, y], phi[:, r]) / n
    return grad


def lemma2_grad_w_kq(state, world):
    """Lemma 2 at t = 0 (sigma_r ~ 0): -dL/dW_KQ = (1/n) sum_i sigma_c sigma_s m_i (phi(c) - phi(s)) phi(r)^T."""
    phi = np.asarray(world.embeddings)
    metrics = cpi.metrics(state, world)
    _, att = cpi.forward(state, world, world.context, world.subject, world.has_context)
    att = np.asarray(att)
    # Per-point margins from the class means: all points of a class are exchangeable.
    margins = np.asarray(metrics["per_class"]["margin"])[np.asarray(world.data_class)]
    grad = np.zeros((phi.shape[0], phi.shape[0]))
    for i in range(world.n_points):
        c, s = int(world.context[i]), int(world.subject[i])
        grad -= att[i, 0] * att[i, 1] * margins[i] * np.outer(phi[:, c] - phi[:, s], phi[:, world.relation])
    return grad / world.n_points


def _trained_state(config, steps):
    world = cpi.build_world(config)
    result = cpi.train(
        world, cpi.pretrained_state(world, config.relation_score), 2.0, 0.3, steps=steps, record_every=1
    )
    return world, result.final_state


@pytest.mark.parametrize(
    "overrides,steps",
    [({}, 0), ({"n_subject_only": 4, "n_counterfactual_augmented": 3}, 0), ({"n_subject_only": 3}, 7)],
)
def test_autodiff_matches_closed_form(overrides, steps):
    config = cpi.Config.from_mapping(overrides)
    world, state = _trained_state(config, steps)
    grad = jax.grad(cpi.training_loss)(state, world)
    np.testing.assert_allclose(grad.w_kq, closed_form_grad_w_kq(state, world), rtol=0, atol=1e-13)


def test_lemma2_reduction_at_initialisation():
    config = cpi.Config()
    world = cpi.build_world(config)
    state = cpi.pretrained_state(world, config.relation_score)
    grad = jax.grad(cpi.training_loss)(state, world)
    # The relation token's weight e^{-30} is what Lemma 2 neglects.
    np.testing.assert_allclose(grad.w_kq, lemma2_grad_w_kq(state, world), rtol=0, atol=1e-11)


def test_autodiff_matches_finite_differences():
    config = cpi.Config.from_mapping({"n_subject_only": 2, "n_counterfactual_augmented": 2})
    world, state = _trained_state(config, 5)
    grad = jax.grad(cpi.training_loss)(state, world)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(3):
        direction = cpi.ToyState(
            w_kq=jnp.asarray(rng.standard_normal(state.w_kq.shape)),
            w_v=jnp.asarray(rng.standard_normal(state.w_v.shape)),
        )
        shifted = lambda sign: jax.tree.map(lambda w, d: w + sign * eps * d, state, direction)  # noqa: B023
        numeric = (cpi.training_loss(shifted(1.0), world) - cpi.training_loss(shifted(-1.0), world)) / (
            2 * eps
        )
        analytic = sum(
            jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction), strict=True)
        )
        assert abs(float(numeric - analytic)) <= 1e-7 * max(1.0, abs(float(analytic)))
