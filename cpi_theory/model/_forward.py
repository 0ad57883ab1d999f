"""The one-layer, one-head attention model (SPEC.md §2) and its loss.

Input ``[c, s, r]`` (or ``[s, r]``), read out at ``r``: scores ``u_y = phi(y)^T W_KQ phi(r)``, attention
``sigma = softmax(u)``, value logits ``v(y) = W_H^T W_V phi(y)`` with the tied head ``W_H = Phi``, output
logits ``z = sum_y sigma_y v(y)``. We compute ``z = Phi^T W_V h`` with ``h = sum_y sigma_y phi(y)``, which is
the same sum but costs one d x d product per point instead of one per token.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._precision import requires_float64
from ._world import World

# Slots of a point: 0 = context c, 1 = subject s, 2 = relation r.
CONTEXT, SUBJECT, RELATION = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class ToyState:
    """The trainable parameters: W_KQ and W_V, both d x d."""

    w_kq: Float[Array, "*batch d d"]
    w_v: Float[Array, "*batch d d"]


jax.tree_util.register_dataclass(ToyState, data_fields=["w_kq", "w_v"], meta_fields=[])


def inputs(world: World, context: Int[Array, " n"], subject: Int[Array, " n"]) -> Float[Array, "n 3 d"]:
    """Embeddings of the three slots of each point: x_Nx3xD."""
    relation = jnp.full_like(subject, world.relation)
    tokens_Nx3 = jnp.stack([context, subject, relation], axis=-1)
    return world.embeddings.T[tokens_Nx3]


def relation_query(state: ToyState, world: World) -> Float[Array, " d"]:
    """q = W_KQ phi(r): the only way W_KQ enters the model (every point is read out at r)."""
    return state.w_kq @ world.embeddings[:, world.relation]


@requires_float64
def attention(state: ToyState, world: World, x_Nx3xD, has_context) -> Float[Array, "n 3"]:
    """sigma over [c, s, r]; the context slot is masked out for points without context."""
    return attention_from_query(relation_query(state, world), x_Nx3xD, has_context)


def attention_from_query(query_D, x_Nx3xD, has_context) -> Float[Array, "n 3"]:
    scores_Nx3 = x_Nx3xD @ query_D
    mask_Nx3 = jnp.stack([has_context, jnp.ones_like(has_context), jnp.ones_like(has_context)], axis=-1)
    scores_Nx3 = jnp.where(mask_Nx3, scores_Nx3, -jnp.inf)
    return jax.nn.softmax(scores_Nx3, axis=-1)


def output_logits(state: ToyState, world: World, x_Nx3xD, att_Nx3) -> Float[Array, "n K"]:
    """z = Phi^T W_V (sum_y sigma_y phi(y))."""
    h_NxD = jnp.einsum("nsd,ns->nd", x_Nx3xD, att_Nx3)
    return (h_NxD @ state.w_v.T) @ world.embeddings


@requires_float64
def forward(state: ToyState, world: World, context, subject, has_context):
    """Output logits z (n x K) and attention sigma (n x 3) for points given by token ids."""
    x_Nx3xD = inputs(world, context, subject)
    att_Nx3 = attention(state, world, x_Nx3xD, has_context)
    return output_logits(state, world, x_Nx3xD, att_Nx3), att_Nx3


@requires_float64
def cross_entropy(logits_NxK, target_N) -> Float[Array, " n"]:
    target_logit = jnp.take_along_axis(logits_NxK, target_N[:, None], axis=-1)[:, 0]
    return jax.nn.logsumexp(logits_NxK, axis=-1) - target_logit


@requires_float64
def point_losses(state: ToyState, world: World) -> Float[Array, " n"]:
    logits_NxK, _ = forward(state, world, world.context, world.subject, world.has_context)
    return cross_entropy(logits_NxK, world.target)


@requires_float64
def training_loss(state: ToyState, world: World) -> Float[Array, ""]:
    """Weighted mean cross-entropy over the training points (plain mean for unit weights)."""
    return jnp.sum(world.weight * point_losses(state, world)) / jnp.sum(world.weight)


def value_logits(state: ToyState, world: World, tokens) -> Float[Array, "... K"]:
    """v(y) = Phi^T W_V phi(y) for each token id in ``tokens``."""
    phi = world.embeddings
    return (phi[:, tokens].T @ state.w_v.T) @ phi


@requires_float64
def probe_logits(state: ToyState, world: World):
    """Output logits and attention on the counterfactual test point [c*, s*, r]."""
    logits_1xK, att_1x3 = forward(
        state,
        world,
        world.probe_context[None],
        world.probe_subject[None],
        jnp.ones((1,), dtype=bool),
    )
    return logits_1xK[0], att_1x3[0]


@requires_float64
def context_reliance(state: ToyState, world: World) -> Float[Array, ""]:
    """M_C = p(c*) / (p(c*) + p(a*)) on the counterfactual test point (paper §5.3)."""
    logits_K, _ = probe_logits(state, world)
    return jax.nn.sigmoid(logits_K[world.probe_context] - logits_K[world.probe_memorized])
