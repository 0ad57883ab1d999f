"""What we record along a trajectory: the counterfactual test point and per-class statistics.

All functions are pure and jit/vmap-friendly. Per-class values are weighted means over a class's points;
a class with no points gives NaN here and is dropped by :class:`cpi_theory.Trajectory`.
"""

import jax
import jax.numpy as jnp

from ._config import DATA_CLASSES
from ._model import CONTEXT, SUBJECT, ToyState, attention, cross_entropy, inputs, output_logits, probe_logits
from ._world import World

PROBE_METRICS = (
    "context_reliance",
    "attention_context",
    "attention_subject",
    "counterfactual_accuracy",
    "parametric_accuracy",
    "loss",
)
CLASS_METRICS = ("loss", "attention_context", "attention_subject", "margin")


def probe_metrics(state: ToyState, world: World) -> dict[str, jax.Array]:
    logits_K, att_3 = probe_logits(state, world)
    c_star, a_star = world.probe_context, world.probe_memorized
    prediction = jnp.argmax(logits_K)
    return {
        # M_C = p(c*) / (p(c*) + p(a*)) = sigmoid(z_c* - z_a*): the normaliser cancels.
        "context_reliance": jax.nn.sigmoid(logits_K[c_star] - logits_K[a_star]),
        "attention_context": att_3[CONTEXT],
        "attention_subject": att_3[SUBJECT],
        "counterfactual_accuracy": (prediction == c_star).astype(logits_K.dtype),
        "parametric_accuracy": (prediction == a_star).astype(logits_K.dtype),
    }


def class_metrics(state: ToyState, world: World) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total training loss and, per data class, loss, attention on c and s, and Lemma 2's margin.

    The margin of a point is m = <v(c) - v(s), e_target - softmax(z)>: the (negative) gradient of its
    loss with respect to the score gap u_c - u_s, up to the factor sigma_c sigma_s.
    """
    x_Nx3xD = inputs(world, world.context, world.subject)
    att_Nx3 = attention(state, world, x_Nx3xD, world.has_context)
    logits_NxK = output_logits(state, world, x_Nx3xD, att_Nx3)
    losses_N = cross_entropy(logits_NxK, world.target)
    residual_NxK = jax.nn.one_hot(
        world.target, logits_NxK.shape[-1], dtype=logits_NxK.dtype
    ) - jax.nn.softmax(logits_NxK, axis=-1)
    # <v(c) - v(s), e_t - p> = (phi(c) - phi(s))^T W_V^T Phi (e_t - p)
    pulled_NxD = (residual_NxK @ world.embeddings.T) @ state.w_v
    margin_N = jnp.einsum("nd,nd->n", x_Nx3xD[:, CONTEXT] - x_Nx3xD[:, SUBJECT], pulled_NxD)
    margin_N = jnp.where(world.has_context, margin_N, jnp.nan)

    total_loss = jnp.sum(world.weight * losses_N) / jnp.sum(world.weight)
    members_NxC = (world.data_class[:, None] == jnp.arange(len(DATA_CLASSES))[None, :]).astype(losses_N.dtype)
    members_NxC = members_NxC * world.weight[:, None]
    size_C = jnp.sum(members_NxC, axis=0)

    def class_mean(values_N):
        # where() keeps NaN margins of S points out of other classes' sums.
        contributions = jnp.where(members_NxC > 0, members_NxC * values_N[:, None], 0.0)
        return jnp.sum(contributions, axis=0) / size_C

    per_class = {
        "loss": class_mean(losses_N),
        "attention_context": class_mean(att_Nx3[:, CONTEXT]),
        "attention_subject": class_mean(att_Nx3[:, SUBJECT]),
        "margin": class_mean(margin_N),
    }
    return total_loss, per_class


def metrics(state: ToyState, world: World) -> dict[str, jax.Array]:
    """Everything recorded at one step: probe metrics, ``loss`` and ``per_class`` (arrays over classes)."""
    out = probe_metrics(state, world)
    out["loss"], out["per_class"] = class_metrics(state, world)
    return out
