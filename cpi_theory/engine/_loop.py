"""The one recorded loop: ``run_recorded`` drives any :class:`Engine` through ``steps`` exact GD steps as a
``lax.scan``, recording at steps 0, k, 2k, ... and always the last step, and noting the first step whose
loss is not finite. ``run_batched`` maps it over runs (``vmap``, or ``lax.map`` in groups of
``vmap_width``); the sweep runner shards that over devices.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import requires_float64
from ._interface import PRECISION_TOLERANCE, Engine


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What the loop returns: ``records`` (leading axis = recorded step, :func:`recorded_steps`), the
    engine's final state, the first step whose loss is not finite (-1 if none), and the first recorded step
    at which float64 stopped resolving M_C's inputs (-1 if none) with the engine's ``magnitude`` there."""

    records: dict
    final_state: Any
    first_nonfinite_step: jax.Array
    first_imprecise_step: jax.Array
    imprecise_magnitude: jax.Array


jax.tree_util.register_dataclass(
    Recorded,
    data_fields=[
        "records",
        "final_state",
        "first_nonfinite_step",
        "first_imprecise_step",
        "imprecise_magnitude",
    ],
    meta_fields=[],
)


def recorded_steps(steps: int, record_every: int) -> np.ndarray:
    """Steps at which the state is recorded: 0, k, 2k, ... and always the last step."""
    recorded = np.arange(0, steps + 1, record_every)
    if recorded[-1] != steps:
        recorded = np.append(recorded, steps)
    return recorded


def _append(records, record):
    return jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], axis=0), records, record)


def _check_precision(engine: Engine, inputs, carry):
    """Note the first recorded step whose state float64 can no longer resolve (see ``Engine.magnitude``)."""
    if engine.magnitude is None:  # the engine checks its recorded states itself
        return carry
    state, t, first_bad, (first_imprecise, at_magnitude) = carry
    magnitude = engine.magnitude(state, inputs)
    eps = jnp.finfo(magnitude.dtype).eps
    newly = (first_imprecise < 0) & (magnitude * eps > PRECISION_TOLERANCE)
    imprecise = (jnp.where(newly, t, first_imprecise), jnp.where(newly, magnitude, at_magnitude))
    return state, t, first_bad, imprecise


def _block(engine: Engine, inputs, carry, n_steps: int, unroll: int = 1):
    """``n_steps`` GD steps; returns the records of the state at the start of the block.

    The step's own forward/backward pass yields some records of its pre-update state for free; only the
    first step's are kept. ``observe`` adds the rest (for the full engine: one small probe forward).
    """

    def body(carry, _):
        state, t, first_bad, imprecise = carry
        state, loss, free = engine.step(state, inputs)
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), t, first_bad)
        return (state, t + 1, first_bad, imprecise), free

    carry = _check_precision(engine, inputs, carry)
    record = engine.observe(carry[0], inputs)
    carry, free = jax.lax.scan(body, carry, None, length=n_steps, unroll=min(unroll, n_steps))
    return carry, {**record, **jax.tree.map(lambda x: x[0], free)}


@requires_float64
def run_recorded(
    engine: Engine, inputs, *, steps: int, record_every: int = 1, state0=None, unroll: int = 1
) -> Recorded:
    """Run ``steps`` exact GD steps of ``engine`` from ``state0`` (default ``engine.init(inputs)``).

    Pure JAX: jit it with ``steps`` and ``record_every`` static (they fix the scan lengths). ``unroll``
    steps run per loop iteration (for engines whose step is so small that the loop's overhead counts).
    """
    state = engine.init(inputs) if state0 is None else state0
    never = jnp.asarray(-1, dtype=jnp.int32)
    no_magnitude = jnp.zeros((), dtype=jnp.result_type(float))
    carry = (state, jnp.asarray(0, dtype=jnp.int32), never, (never, no_magnitude))
    carry, records = jax.lax.scan(
        lambda carry, _: _block(engine, inputs, carry, record_every, unroll),
        carry,
        None,
        length=steps // record_every,
        unroll=max(1, min(unroll // record_every, steps // record_every)),
    )
    if steps % record_every:
        carry, record = _block(engine, inputs, carry, steps % record_every, unroll)
        records = _append(records, record)
    # The final state is recorded too; no step follows it, so its metrics cost one extra pass.
    state, _, first_bad, (first_imprecise, magnitude) = _check_precision(engine, inputs, carry)
    final_state, record = engine.finish(state, inputs)
    return Recorded(
        records=_append(records, record),
        final_state=final_state,
        first_nonfinite_step=first_bad,
        first_imprecise_step=first_imprecise,
        imprecise_magnitude=magnitude,
    )


@requires_float64
def run_batched(run_one: Callable, per_run, vmap_width: int | None = None):
    """``run_one`` over the leading run axis of ``per_run``: all runs in one ``vmap`` (``vmap_width`` None or
    at least the number of runs), else ``lax.map`` advancing ``vmap_width`` runs together."""
    n_runs = jax.tree.leaves(per_run)[0].shape[0]
    if vmap_width is None or vmap_width >= n_runs:
        return jax.vmap(run_one)(per_run)
    return jax.lax.map(run_one, per_run, batch_size=vmap_width)
