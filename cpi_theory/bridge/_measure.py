"""The toy's quantities measured on the real transformer, all from the answer (last) position.

- ``context_reliance`` M_C = mean over counterfactual probes of p(c*) / (p(c*) + p(a*));
- ``counterfactual_accuracy``: argmax is the context answer c*; ``counterfactual_memory_rate``: argmax is the
  memorized a* despite the context; ``parametric_accuracy``: closed-book recall of the probe facts;
- ``delta_m``: mean p(a*) without context (memorization strength), ``delta_c``: mean p(c) when copying a
  context on held-out unknown subjects (copying strength) -- the toy's delta_M and delta_C;
- ``attention_context``: per layer, the attention mass from the answer position on the context span,
  averaged over heads and counterfactual probes;
- ``loss_c``, ``loss_cs``, ``loss_s``: mean cross-entropy per finetuning class (NaN for an empty class).
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from ..config._data_class import DataClass
from ._world import FactWorld

#: The measurement (and report field) holding each finetuning class's loss.
CLASS_LOSS_KEYS = {
    DataClass.CONTEXT_CRITICAL: "loss_c",
    DataClass.NON_CONTEXT_CRITICAL: "loss_cs",
    DataClass.SUBJECT_ONLY: "loss_s",
}


def _last_log_probs(model, tokens_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits_BxLxV, att_NxBxHxLxL = model(tokens_BxL)
    return jax.nn.log_softmax(logits_BxLxV[:, -1], axis=-1), att_NxBxHxLxL


def _pick(logp_BxV, idx_B):
    return jnp.take_along_axis(logp_BxV, idx_B[:, None], axis=1)[:, 0]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _probe_measurements(graphdef, slots: tuple[int, ...], states, probes):
    model = nnx.merge(graphdef, *states)
    logp_BxV, att_NxBxHxLxL = _last_log_probs(model, probes["cf_tokens"])
    cf_context, cf_memory = probes["cf_context"], probes["cf_memory"]
    lp_context_B, lp_memory_B = _pick(logp_BxV, cf_context), _pick(logp_BxV, cf_memory)
    # p(c)/(p(c)+p(a)) = sigmoid(log p(c) - log p(a)): stable when both are tiny.
    reliance_B = jax.nn.sigmoid(lp_context_B - lp_memory_B)
    argmax_B = jnp.argmax(logp_BxV, axis=-1).astype(jnp.int32)
    recall_logp_BxV, _ = _last_log_probs(model, probes["recall_tokens"])
    copy_logp_BxV, _ = _last_log_probs(model, probes["copy_tokens"])
    recall_argmax_B = jnp.argmax(recall_logp_BxV, axis=-1).astype(jnp.int32)
    return {
        "context_reliance": reliance_B.mean(),
        "counterfactual_accuracy": (argmax_B == cf_context).astype(jnp.float32).mean(),
        "counterfactual_memory_rate": (argmax_B == cf_memory).astype(jnp.float32).mean(),
        "parametric_accuracy": (recall_argmax_B == cf_memory).astype(jnp.float32).mean(),
        "delta_m": jnp.exp(_pick(recall_logp_BxV, cf_memory)).mean(),
        "delta_c": jnp.exp(_pick(copy_logp_BxV, probes["copy_targets"])).mean(),
        "attention_context": att_NxBxHxLxL[:, :, :, -1, jnp.asarray(slots)].sum(axis=-1).mean(axis=(1, 2)),
    }


@functools.partial(jax.jit, static_argnums=0)
def _class_loss(graphdef, states, tokens_BxL, targets_B):
    logp_BxV, _ = _last_log_probs(nnx.merge(graphdef, *states), tokens_BxL)
    return -_pick(logp_BxV, targets_B).mean()


def make_measure_fn(graphdef: nnx.GraphDef, fact_world: FactWorld):
    """``measure(*states) -> dict`` of scalars (``attention_context`` is an (n_layers,) array).

    The jitted kernels take the probe arrays as arguments, so they compile once per model and probe shape,
    not once per finetuning run.
    """
    counterfactual = fact_world.counterfactual_probe()
    recall, copy = fact_world.recall_probe(), fact_world.copy_probe()
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    probes = {
        "cf_tokens": i32(counterfactual.tokens),
        "cf_context": i32(counterfactual.targets),
        "cf_memory": i32(fact_world.probe_answers),
        "recall_tokens": i32(recall.tokens),
        "copy_tokens": i32(copy.tokens),
        "copy_targets": i32(copy.targets),
    }
    slots = tuple(fact_world.config.context_slots)
    classes = {
        key: (i32(ex.tokens), i32(ex.targets))
        for data_class, key in CLASS_LOSS_KEYS.items()
        if len(ex := fact_world.finetune[data_class])
    }

    def measure(*states):
        out = _probe_measurements(graphdef, slots, states, probes)
        for key in CLASS_LOSS_KEYS.values():
            if key in classes:
                out[key] = _class_loss(graphdef, states, *classes[key])
            else:
                out[key] = jnp.asarray(jnp.nan, dtype=jnp.float32)
        return out

    return measure
