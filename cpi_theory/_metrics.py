"""What we record along a trajectory: the counterfactual test point and per-class statistics.

All functions are pure and jit/vmap-friendly. Per-class values are weighted means over a class's points;
a class with no points gives NaN here and is dropped by :class:`cpi_theory.Trajectory`.
"""

import jax
import jax.numpy as jnp

from ._config import DATA_CLASSES
from ._model import CONTEXT, SUBJECT, ToyState, attention, cross_entropy, inputs, probe_logits
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
    prediction = jnp.argmax(logits_K).astype(c_star.dtype)
    return {
        # M_C = p(c*) / (p(c*) + p(a*)) = sigmoid(z_c* - z_a*): the normaliser cancels.
        "context_reliance": jax.nn.sigmoid(logits_K[c_star] - logits_K[a_star]),
        "attention_context": att_3[CONTEXT],
        "attention_subject": att_3[SUBJECT],
        "counterfactual_accuracy": (prediction == c_star).astype(logits_K.dtype),
        "parametric_accuracy": (prediction == a_star).astype(logits_K.dtype),
    }


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

    classes = jnp.arange(len(DATA_CLASSES), dtype=world.data_class.dtype)
    members_NxC = (world.data_class[:, None] == classes[None, :]).astype(losses_N.dtype)
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
    return total, grad, per_class


def class_metrics(state: ToyState, world: World) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total training loss and per-class metrics (see :func:`loss_grad_and_class_metrics`)."""
    total, _, per_class = loss_grad_and_class_metrics(state, world)
    return total, per_class


def metrics(state: ToyState, world: World) -> dict[str, jax.Array]:
    """Everything recorded at one step: probe metrics, ``loss`` and ``per_class`` (arrays over classes)."""
    out = probe_metrics(state, world)
    out["loss"], out["per_class"] = class_metrics(state, world)
    return out
