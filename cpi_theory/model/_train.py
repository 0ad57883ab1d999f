"""Exact full-batch gradient descent on the toy model, as one jitted ``lax.scan``.

Learning rates are traced arguments: changing them reuses the compiled trainer (with lr_v = 0 the step
runs from W_V's constant value logits, see :func:`train`). ``steps`` and ``record_every`` fix the scan
lengths and therefore the compiled shape.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._forward import ToyState, relation_query, training_loss
from ._metrics import (
    frozen_loss_grad_and_class_metrics,
    frozen_probe_metrics,
    frozen_values,
    loss_grad_and_class_metrics,
    metrics,
    probe_metrics,
)
from ._world import World


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Recorded metrics (leading axis = record), the final state, and the first step with a non-finite loss
    (-1 if none)."""

    records: dict
    final_state: ToyState
    first_nonfinite_step: jax.Array


jax.tree_util.register_dataclass(
    TrainResult, data_fields=["records", "final_state", "first_nonfinite_step"], meta_fields=[]
)


def recorded_steps(steps: int, record_every: int) -> np.ndarray:
    """Steps at which the state is recorded: 0, k, 2k, ... and always the last step."""
    recorded = np.arange(0, steps + 1, record_every)
    if recorded[-1] != steps:
        recorded = np.append(recorded, steps)
    return recorded


def apply_gradient(state: ToyState, grad: ToyState, lr_kq, lr_v) -> ToyState:
    """W <- W - lr * grad, with separate rates for W_KQ and W_V."""
    return ToyState(w_kq=state.w_kq - lr_kq * grad.w_kq, w_v=state.w_v - lr_v * grad.w_v)


def gd_step(state: ToyState, world: World, lr_kq, lr_v):
    """One exact full-batch step on the mean loss; returns the new state and the loss before it."""
    loss, grad = jax.value_and_grad(training_loss)(state, world)
    return apply_gradient(state, grad, lr_kq, lr_v), loss


def _block(carry, n_steps, step, probe):
    """``n_steps`` GD steps; returns the metrics of the state at the start of the block.

    ``step(params) -> (loss, new params, per-class metrics of params)``: each step's forward/backward pass
    yields the training-set metrics of its (pre-update) state for free; ``probe(params)`` costs one small
    extra forward. Only the first step's metrics are kept.
    """

    def body(carry, _):
        params, t, first_bad = carry
        loss, params, per_class = step(params)
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), t, first_bad)
        return (params, t + 1, first_bad), (loss, per_class)

    record = probe(carry[0])
    carry, (losses, per_class) = jax.lax.scan(body, carry, None, length=n_steps)
    record["loss"] = losses[0]
    record["per_class"] = jax.tree.map(lambda x: x[0], per_class)
    return carry, record


def _run_blocks(carry, steps, record_every, step, probe):
    carry, records = jax.lax.scan(
        lambda carry, _: _block(carry, record_every, step, probe), carry, None, length=steps // record_every
    )
    if steps % record_every:
        carry, record = _block(carry, steps % record_every, step, probe)
        records = _append(records, record)
    return carry, records


def _general_run(state0, world, lr_kq, lr_v, steps, record_every, counters):
    def step(state):
        loss, grad, per_class = loss_grad_and_class_metrics(state, world)
        return loss, apply_gradient(state, grad, lr_kq, lr_v), per_class

    return _run_blocks((state0, *counters), steps, record_every, step, lambda s: probe_metrics(s, world))


def _frozen_run(state0, world, lr_kq, steps, record_every, counters):
    """GD with W_V frozen, carrying the relation query q = W_KQ phi(r) instead of W_KQ.

    W_KQ enters the loss only through q, so dL/dW_KQ = g phi(r)^T with g = dL/dq, a step moves q by
    -lr_kq |phi(r)|^2 g, and W_KQ(t) = W_KQ(0) - lr_kq (sum of the g's) phi(r)^T is rebuilt once at the end.
    Each step then costs O(n K) instead of d x d products and d x d memory traffic.
    """
    values = frozen_values(state0, world)
    phi_r = world.embeddings[:, world.relation]

    def step(params):
        query_D, grad_sum_D = params
        loss, grad_D, per_class = frozen_loss_grad_and_class_metrics(query_D, world, values)
        return loss, (query_D - lr_kq * (phi_r @ phi_r) * grad_D, grad_sum_D + grad_D), per_class

    query0_D = relation_query(state0, world)
    carry0 = ((query0_D, jnp.zeros_like(query0_D)), *counters)
    probe = lambda params: frozen_probe_metrics(params[0], world, values)
    ((_, grad_sum_D), *counters), records = _run_blocks(carry0, steps, record_every, step, probe)
    final = ToyState(w_kq=state0.w_kq - lr_kq * jnp.outer(grad_sum_D, phi_r), w_v=state0.w_v)
    return (final, *counters), records


def _append(records, record):
    return jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], axis=0), records, record)


@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def train(world: World, state0: ToyState, lr_kq, lr_v, *, steps: int, record_every: int = 1) -> TrainResult:
    """Run ``steps`` GD updates from ``state0``, recording :func:`metrics` at :func:`recorded_steps`."""
    dtype = state0.w_kq.dtype
    lr_kq = jnp.asarray(lr_kq, dtype=dtype)
    lr_v = jnp.asarray(lr_v, dtype=dtype)
    counters = (jnp.asarray(0, dtype=jnp.int32), jnp.asarray(-1, dtype=jnp.int32))  # step, first bad step
    # With lr_v = 0 (QK-only finetuning) W_V never moves: its value logits are computed once and the step
    # runs on q = W_KQ phi(r) (see _frozen_run). lax.cond keeps lr_v a traced argument: one compilation
    # serves both; only the taken branch runs (under vmap both run, as a select).
    carry, records = jax.lax.cond(
        lr_v == 0,
        lambda: _frozen_run(state0, world, lr_kq, steps, record_every, counters),
        lambda: _general_run(state0, world, lr_kq, lr_v, steps, record_every, counters),
    )
    # The final state is recorded too; no step follows it, so its metrics cost one extra pass.
    records = _append(records, metrics(carry[0], world))
    return TrainResult(records=records, final_state=carry[0], first_nonfinite_step=carry[2])
