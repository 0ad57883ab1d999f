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

from ._metrics import (
    frozen_loss_grad_and_class_metrics,
    frozen_probe_metrics,
    frozen_values,
    loss_grad_and_class_metrics,
    metrics,
    probe_metrics,
)
from ._model import ToyState, training_loss
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


def _block(carry, world, lr_kq, lr_v, n_steps, values):
    """``n_steps`` GD steps; returns the metrics of the state at the start of the block.

    Each step's forward/backward pass yields the training-set metrics of its (pre-update) state for free;
    the probe point costs one small extra forward. Only the first step's metrics are kept. ``values``:
    None for the general step, or the constant :class:`FrozenValues` when W_V is frozen (lr_v = 0).
    """

    def body(carry, _):
        state, t, first_bad = carry
        if values is None:
            loss, grad, per_class = loss_grad_and_class_metrics(state, world)
        else:
            loss, grad, per_class = frozen_loss_grad_and_class_metrics(state, world, values)
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), t, first_bad)
        return (apply_gradient(state, grad, lr_kq, lr_v), t + 1, first_bad), (loss, per_class)

    start_state = carry[0]
    carry, (losses, per_class) = jax.lax.scan(body, carry, None, length=n_steps)
    if values is None:
        record = probe_metrics(start_state, world)
    else:
        record = frozen_probe_metrics(start_state, world, values)
    record["loss"] = losses[0]
    record["per_class"] = jax.tree.map(lambda x: x[0], per_class)
    return carry, record


def _run_blocks(carry, world, lr_kq, lr_v, steps, record_every, values):
    carry, records = jax.lax.scan(
        lambda carry, _: _block(carry, world, lr_kq, lr_v, record_every, values),
        carry,
        None,
        length=steps // record_every,
    )
    if steps % record_every:
        carry, record = _block(carry, world, lr_kq, lr_v, steps % record_every, values)
        records = _append(records, record)
    return carry, records


def _append(records, record):
    return jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], axis=0), records, record)


@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def train(world: World, state0: ToyState, lr_kq, lr_v, *, steps: int, record_every: int = 1) -> TrainResult:
    """Run ``steps`` GD updates from ``state0``, recording :func:`metrics` at :func:`recorded_steps`."""
    dtype = state0.w_kq.dtype
    lr_kq = jnp.asarray(lr_kq, dtype=dtype)
    lr_v = jnp.asarray(lr_v, dtype=dtype)
    carry = (state0, jnp.asarray(0, dtype=jnp.int32), jnp.asarray(-1, dtype=jnp.int32))
    # With lr_v = 0 (QK-only finetuning) W_V never moves, so its value logits are computed once and each
    # step avoids the d x d products (19x fewer flops at the default size). lax.cond keeps lr_v a traced
    # argument: one compilation serves both; only the taken branch runs (under vmap both run, as a select).
    carry, records = jax.lax.cond(
        lr_v == 0,
        lambda: _run_blocks(carry, world, lr_kq, lr_v, steps, record_every, frozen_values(state0, world)),
        lambda: _run_blocks(carry, world, lr_kq, lr_v, steps, record_every, None),
    )
    # The final state is recorded too; no step follows it, so its metrics cost one extra pass.
    records = _append(records, metrics(carry[0], world))
    return TrainResult(records=records, final_state=carry[0], first_nonfinite_step=carry[2])
