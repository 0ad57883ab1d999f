"""What we record along a trajectory: the counterfactual test point and per-class statistics.

All functions are pure and jit/vmap-friendly. Per-class values are weighted means over a class's points;
a class with no points gives NaN here and is dropped by :class:`cpi_theory.Trajectory`.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._precision import requires_float64
from ..config._data_class import DataClass
from ._forward import (
    CONTEXT,
    SUBJECT,
    ToyState,
    attention,
    attention_from_query,
    cross_entropy,
    inputs,
    probe_logits,
    relation_query,
)
from ._world import World


@requires_float64
def probe_metrics(state: ToyState, world: World) -> dict[str, jax.Array]:
    logits_K, att_3 = probe_logits(state, world)
    return _probe_metrics_from(logits_K, att_3, world)


def _probe_metrics_from(logits_K, att_3, world: World) -> dict[str, jax.Array]:
    c_star, a_star = world.probe_context, world.probe_memorized
    prediction = jnp.argmax(logits_K).astype(c_star.dtype)
    return {
        # M_C = p(c*) / (p(c*) + p(a*)) = sigmoid(z_c* - z_a*): the normaliser cancels.
        "context_reliance": jax.nn.sigmoid(logits_K[c_star] - logits_K[a_star]),
        "attention_context": att_3[CONTEXT],
        "attention_subject": att_3[SUBJECT],
        "counterfactual_accuracy": (prediction == c_star).astype(logits_K.dtype),
        "parametric_accuracy": (prediction == a_star).astype(logits_K.dtype),
    }


def _gap_magnitude(logits_K, scores_3, att_3, world: World):
    """|z_c*| + |z_a*| + sum_y sigma_y |u_y| on the probe: float64 rounds M_C's logit gap z_c* - z_a* by
    about eps times this (the attention's share through its scores), so it bounds how many digits of M_C
    the arithmetic keeps."""
    gap_terms = jnp.abs(logits_K[world.probe_context]) + jnp.abs(logits_K[world.probe_memorized])
    return gap_terms + jnp.sum(att_3 * jnp.abs(scores_3))


def probe_magnitude(state: ToyState, world: World) -> jax.Array:
    """:func:`_gap_magnitude` of a full state (the engine's ``magnitude``)."""
    probe_x_3xD = inputs(world, world.probe_context[None], world.probe_subject[None])[0]
    scores_3 = probe_x_3xD @ relation_query(state, world)
    logits_K, att_3 = probe_logits(state, world)
    return _gap_magnitude(logits_K, scores_3, att_3, world)


def _loss_with_aux(state: ToyState, world: World, h_shift_NxD):
    """Training loss as a function of the state and a shift of each point's attended input h (zero in use).

    Differentiating at a zero shift gives dL/dh alongside the parameter gradient in one backward pass;
    Lemma 2's margins are read off it instead of recomputing value logits.
    """
    x_Nx3xD = inputs(world, world.context, world.subject)
    att_Nx3 = attention(state, world, x_Nx3xD, world.has_context)
    h_NxD = jnp.einsum("nsd,ns->nd", x_Nx3xD, att_Nx3) + h_shift_NxD
    logits_NxK = (h_NxD @ state.w_v.T) @ world.embeddings
    losses_N = cross_entropy(logits_NxK, world.target)
    total = jnp.sum(world.weight * losses_N) / jnp.sum(world.weight)
    return total, (losses_N, att_Nx3, x_Nx3xD)


def _per_class(world: World, losses_N, att_Nx3, margin_N) -> dict[str, jax.Array]:
    """Weighted per-class means of point losses, attention on c and s, and margins."""
    classes = jnp.arange(len(DataClass), dtype=world.data_class.dtype)
    members_NxC = (world.data_class[:, None] == classes[None, :]).astype(losses_N.dtype)
    members_NxC = members_NxC * world.weight[:, None]
    size_C = jnp.sum(members_NxC, axis=0)

    def class_mean(values_N):
        # where() keeps NaN margins of S points out of other classes' sums.
        contributions = jnp.where(members_NxC > 0, members_NxC * values_N[:, None], 0.0)
        return jnp.sum(contributions, axis=0) / size_C

    return {
        "loss": class_mean(losses_N),
        "attention_context": class_mean(att_Nx3[:, CONTEXT]),
        "attention_subject": class_mean(att_Nx3[:, SUBJECT]),
        "margin": class_mean(margin_N),
    }


def loss_grad_and_class_metrics(state: ToyState, world: World):
    """One forward/backward pass: training loss, its gradient, and per-class metrics of the same state.

    Per class: loss, attention on c and s, and Lemma 2's margin m = <v(c) - v(s), e_target - softmax(z)>,
    the (negative) gradient of a point's loss with respect to the score gap u_c - u_s, up to sigma_c sigma_s.
    """
    shift_NxD = jnp.zeros((world.n_points, world.embeddings.shape[0]), dtype=world.embeddings.dtype)
    (total, (losses_N, att_Nx3, x_Nx3xD)), (grad, dloss_dh_NxD) = jax.value_and_grad(
        _loss_with_aux, argnums=(0, 2), has_aux=True
    )(state, world, shift_NxD)
    # dL/dh_i = (w_i / sum w) W_V^T Phi (p_i - e_t), so m_i = -(phi(c) - phi(s)) . dL/dh_i * sum w / w_i.
    scale_N = jnp.sum(world.weight) / jnp.where(world.weight > 0, world.weight, jnp.nan)
    margin_N = -jnp.einsum("nd,nd->n", x_Nx3xD[:, CONTEXT] - x_Nx3xD[:, SUBJECT], dloss_dh_NxD) * scale_N
    margin_N = jnp.where(world.has_context, margin_N, jnp.nan)
    return total, grad, _per_class(world, losses_N, att_Nx3, margin_N)


@requires_float64
def class_metrics(state: ToyState, world: World) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total training loss and per-class metrics (see :func:`loss_grad_and_class_metrics`)."""
    total, _, per_class = loss_grad_and_class_metrics(state, world)
    return total, per_class


@requires_float64
def metrics(state: ToyState, world: World) -> dict[str, jax.Array]:
    """Everything recorded at one step: probe metrics, ``loss`` and ``per_class`` (arrays over classes)."""
    out = probe_metrics(state, world)
    out["loss"], out["per_class"] = class_metrics(state, world)
    return out


# ---- W_V frozen (lr_v = 0, the paper's QK-only finetuning) ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class FrozenValues:
    """Value logits v(y) = Phi^T W_V phi(y) of every slot of every training point and of the probe.

    With W_V frozen they are constants of training, and the logits of a point are sigma^T V: the d x d
    products of the general path (``loss_grad_and_class_metrics``) drop out of every step.
    """

    x_Nx3xD: Float[Array, "*batch n 3 d"]
    v_Nx3xK: Float[Array, "*batch n 3 K"]
    probe_x_3xD: Float[Array, "*batch 3 d"]
    probe_v_3xK: Float[Array, "*batch 3 K"]


jax.tree_util.register_dataclass(
    FrozenValues, data_fields=["x_Nx3xD", "v_Nx3xK", "probe_x_3xD", "probe_v_3xK"], meta_fields=[]
)


def frozen_values(state: ToyState, world: World) -> FrozenValues:
    x_Nx3xD = inputs(world, world.context, world.subject)
    probe_x_3xD = inputs(world, world.probe_context[None], world.probe_subject[None])[0]
    value_logits = lambda x: (x @ state.w_v.T) @ world.embeddings
    return FrozenValues(x_Nx3xD, value_logits(x_Nx3xD), probe_x_3xD, value_logits(probe_x_3xD))


def frozen_loss_grad_and_class_metrics(query_D, world: World, values: FrozenValues):
    """:func:`loss_grad_and_class_metrics` when W_V is frozen, as a function of the relation query
    q = W_KQ phi(r): the loss, dL/dq (dL/dW_KQ = dL/dq phi(r)^T) and the per-class metrics, from the
    constant value logits. Lemma 2's margin is read off directly: m = <v(c) - v(s), e_target - softmax(z)>."""

    def loss(query_D):
        att_Nx3 = attention_from_query(query_D, values.x_Nx3xD, world.has_context)
        logits_NxK = jnp.einsum("ns,nsk->nk", att_Nx3, values.v_Nx3xK)
        losses_N = cross_entropy(logits_NxK, world.target)
        return jnp.sum(world.weight * losses_N) / jnp.sum(world.weight), (losses_N, att_Nx3, logits_NxK)

    (total, (losses_N, att_Nx3, logits_NxK)), grad_D = jax.value_and_grad(loss, has_aux=True)(query_D)
    residual_NxK = jax.nn.one_hot(world.target, logits_NxK.shape[-1], dtype=logits_NxK.dtype)
    residual_NxK = residual_NxK - jax.nn.softmax(logits_NxK, axis=-1)
    gap_NxK = values.v_Nx3xK[:, CONTEXT] - values.v_Nx3xK[:, SUBJECT]
    margin_N = jnp.where(world.has_context, jnp.einsum("nk,nk->n", gap_NxK, residual_NxK), jnp.nan)
    return total, grad_D, _per_class(world, losses_N, att_Nx3, margin_N)


def frozen_probe_magnitude(query_D, world: World, values: FrozenValues) -> jax.Array:
    """:func:`probe_magnitude` from the relation query and the probe's constant value logits."""
    scores_3 = values.probe_x_3xD @ query_D
    att_3 = attention_from_query(query_D, values.probe_x_3xD[None], jnp.ones((1,), dtype=bool))[0]
    return _gap_magnitude(att_3 @ values.probe_v_3xK, scores_3, att_3, world)


def frozen_probe_metrics(query_D, world: World, values: FrozenValues) -> dict[str, jax.Array]:
    """:func:`probe_metrics` from the relation query and the probe's constant value logits."""
    att_3 = attention_from_query(query_D, values.probe_x_3xD[None], jnp.ones((1,), dtype=bool))[0]
    return _probe_metrics_from(att_3 @ values.probe_v_3xK, att_3, world)
