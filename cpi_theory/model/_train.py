"""The full d x d engine (SPEC.md §2-4): exact full-batch gradient descent on W_KQ and W_V.

Two step functions implement :class:`cpi_theory.engine.Engine` for it: the general one (W_V trained) and,
with lr_v = 0 (the paper's QK-only finetuning), one that steps the relation query q = W_KQ phi(r) from
W_V's constant value logits. :func:`train` runs either through the one loop,
:func:`cpi_theory.engine.run_recorded`. Learning rates are traced arguments: changing them reuses the
compiled trainer; ``steps`` and ``record_every`` fix the scan lengths and therefore the compiled shape.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._precision import requires_float64
from ..engine._interface import Engine
from ..engine._loop import Recorded, run_recorded
from ._forward import ToyState, relation_query, training_loss
from ._metrics import (
    FrozenValues,
    frozen_loss_grad_and_class_metrics,
    frozen_probe_magnitude,
    frozen_probe_metrics,
    frozen_values,
    loss_grad_and_class_metrics,
    metrics,
    probe_magnitude,
    probe_metrics,
)
from ._world import World


@dataclasses.dataclass(frozen=True)
class FullInputs:
    """What one run of the full engine is given: the world, the pretrained state and the learning rates."""

    world: World
    state0: ToyState
    lr_kq: Float[Array, "*batch"]
    lr_v: Float[Array, "*batch"]


jax.tree_util.register_dataclass(FullInputs, data_fields=["world", "state0", "lr_kq", "lr_v"], meta_fields=[])


def apply_gradient(state: ToyState, grad: ToyState, lr_kq, lr_v) -> ToyState:
    """W <- W - lr * grad, with separate rates for W_KQ and W_V."""
    return ToyState(w_kq=state.w_kq - lr_kq * grad.w_kq, w_v=state.w_v - lr_v * grad.w_v)


@requires_float64
def gd_step(state: ToyState, world: World, lr_kq, lr_v):
    """One exact full-batch step on the mean loss; returns the new state and the loss before it."""
    loss, grad = jax.value_and_grad(training_loss)(state, world)
    return apply_gradient(state, grad, lr_kq, lr_v), loss


# ---- W_V trained: the general step ---------------------------------------------------------------------


def _general_step(state: ToyState, inputs: FullInputs):
    # One forward/backward pass yields the training-set metrics of the pre-update state for free.
    loss, grad, per_class = loss_grad_and_class_metrics(state, inputs.world)
    new_state = apply_gradient(state, grad, inputs.lr_kq, inputs.lr_v)
    return new_state, loss, {"loss": loss, "per_class": per_class}


FULL_ENGINE = Engine(
    name="full",
    init=lambda inputs: inputs.state0,
    step=_general_step,
    observe=lambda state, inputs: probe_metrics(state, inputs.world),
    finish=lambda state, inputs: (state, metrics(state, inputs.world)),
    magnitude=lambda state, inputs: probe_magnitude(state, inputs.world),
)


# ---- W_V frozen (lr_v = 0): step the relation query ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FrozenValuesState:
    """GD state with W_V frozen: the relation query q = W_KQ phi(r), the sum of its gradients (to rebuild
    W_KQ once at the end) and W_V's constant value logits."""

    query_D: Float[Array, "*batch d"]
    grad_sum_D: Float[Array, "*batch d"]
    values: FrozenValues


jax.tree_util.register_dataclass(
    FrozenValuesState, data_fields=["query_D", "grad_sum_D", "values"], meta_fields=[]
)


def _frozen_init(inputs: FullInputs) -> FrozenValuesState:
    query0_D = relation_query(inputs.state0, inputs.world)
    return FrozenValuesState(query0_D, jnp.zeros_like(query0_D), frozen_values(inputs.state0, inputs.world))


def _frozen_step(state: FrozenValuesState, inputs: FullInputs):
    """W_KQ enters the loss only through q, so dL/dW_KQ = g phi(r)^T with g = dL/dq and a step moves q by
    -lr_kq |phi(r)|^2 g: O(n K) per step instead of d x d products and d x d memory traffic."""
    phi_r = inputs.world.embeddings[:, inputs.world.relation]
    loss, grad_D, per_class = frozen_loss_grad_and_class_metrics(state.query_D, inputs.world, state.values)
    new_state = FrozenValuesState(
        state.query_D - inputs.lr_kq * (phi_r @ phi_r) * grad_D, state.grad_sum_D + grad_D, state.values
    )
    return new_state, loss, {"loss": loss, "per_class": per_class}


def _frozen_finish(state: FrozenValuesState, inputs: FullInputs):
    """W_KQ(t) = W_KQ(0) - lr_kq (sum of the g's) phi(r)^T, rebuilt once; then all metrics of it."""
    phi_r = inputs.world.embeddings[:, inputs.world.relation]
    state0 = inputs.state0
    final = ToyState(w_kq=state0.w_kq - inputs.lr_kq * jnp.outer(state.grad_sum_D, phi_r), w_v=state0.w_v)
    return final, metrics(final, inputs.world)


FROZEN_VALUES_ENGINE = Engine(
    name="full",
    init=_frozen_init,
    step=_frozen_step,
    observe=lambda state, inputs: frozen_probe_metrics(state.query_D, inputs.world, state.values),
    finish=_frozen_finish,
    magnitude=lambda state, inputs: frozen_probe_magnitude(state.query_D, inputs.world, state.values),
)


@requires_float64
@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def train(world: World, state0: ToyState, lr_kq, lr_v, *, steps: int, record_every: int = 1) -> Recorded:
    """Run ``steps`` GD updates from ``state0``, recording :func:`metrics` at the recorded steps
    (:func:`cpi_theory.engine.recorded_steps`). The final state is a :class:`ToyState`."""
    dtype = state0.w_kq.dtype
    inputs = FullInputs(world, state0, jnp.asarray(lr_kq, dtype=dtype), jnp.asarray(lr_v, dtype=dtype))
    # With lr_v = 0 (QK-only finetuning) W_V never moves: its value logits are computed once and the step
    # runs on q. lax.cond keeps lr_v a traced argument: one compilation serves both; only the taken branch
    # runs (under vmap both run, as a select: sweeps bucket frozen-W_V runs apart).
    return jax.lax.cond(
        inputs.lr_v == 0,
        lambda: run_recorded(FROZEN_VALUES_ENGINE, inputs, steps=steps, record_every=record_every),
        lambda: run_recorded(FULL_ENGINE, inputs, steps=steps, record_every=record_every),
    )
