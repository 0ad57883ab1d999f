"""Exact full-batch gradient descent on the toy model, as one jitted ``lax.scan``.

Learning rates are traced arguments: changing them reuses the compiled trainer. ``steps`` and
``record_every`` fix the scan lengths and therefore the compiled shape.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._metrics import metrics
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


def gd_step(state: ToyState, world: World, lr_kq, lr_v):
    """One exact full-batch step W <- W - lr * grad(mean loss); returns the new state and the loss before it."""
    loss, grad = jax.value_and_grad(training_loss)(state, world)
    return ToyState(w_kq=state.w_kq - lr_kq * grad.w_kq, w_v=state.w_v - lr_v * grad.w_v), loss


def _run_steps(carry, world, lr_kq, lr_v, n_steps):
    def body(carry, _):
        state, t, first_bad = carry
        state, loss = gd_step(state, world, lr_kq, lr_v)
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), t, first_bad)
        return (state, t + 1, first_bad), None

    carry, _ = jax.lax.scan(body, carry, None, length=n_steps)
    return carry


def _stack(*trees):
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def train(world: World, state0: ToyState, lr_kq, lr_v, *, steps: int, record_every: int = 1) -> TrainResult:
    """Run ``steps`` GD updates from ``state0``, recording :func:`metrics` at :func:`recorded_steps`."""
    dtype = state0.w_kq.dtype
    lr_kq = jnp.asarray(lr_kq, dtype=dtype)
    lr_v = jnp.asarray(lr_v, dtype=dtype)
    carry = (state0, jnp.asarray(0, dtype=jnp.int32), jnp.asarray(-1, dtype=jnp.int32))

    def block(carry, _):
        carry = _run_steps(carry, world, lr_kq, lr_v, record_every)
        return carry, metrics(carry[0], world)

    first = jax.tree.map(lambda x: x[None], metrics(state0, world))
    carry, blocks = jax.lax.scan(block, carry, None, length=steps // record_every)
    records = _stack(first, blocks)
    remainder = steps % record_every
    if remainder:
        carry = _run_steps(carry, world, lr_kq, lr_v, remainder)
        records = _stack(records, jax.tree.map(lambda x: x[None], metrics(carry[0], world)))
    return TrainResult(records=records, final_state=carry[0], first_nonfinite_step=carry[2])
