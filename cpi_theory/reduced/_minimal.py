"""The minimal exact reduced engine: per regime, only the coordinates that move, one fused update.

The state of a run is ``MinimalState(x, t)``: ``x`` (``(n,)`` for the ``n`` coordinates of the regime, in
``_generated.STATE_<regime>`` order) and the step counter ``t``. One step is ``x + lr_scale(t) * v(x)``
with ``v`` the generated velocity (:mod:`._codegen`), so the engine is elementwise over a batch axis and
differentiable (``jax.grad`` / ``jax.jacfwd``) in every parameter and in the initial state.

The regime is read from concrete parameter values (``regime_of``); under tracing (``jax.grad`` with respect
to ``lr_v`` or a class size, say) pass one explicitly: the regime must *cover* every parameter the
derivative is taken in (``GENERAL``, with every class and W_V trained, covers all), because a regime without
S points, say, has no coordinates through which ``n_S`` could act.

The loop records the raw state only; the metrics of the recorded states are computed afterwards, as one
vectorized pass (``observe`` then costs a copy, not a forward pass).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import requires_float64
from ..engine._interface import Engine
from ..engine._loop import Recorded, run_recorded
from . import _generated
from ._codegen import REGIMES, Regime
from ._compiled import _compiled, reduced_metrics

GENERAL = Regime(value_trained=True, has_s=True, has_aug=True)
SQRT_HALF = math.sqrt(0.5)


@dataclasses.dataclass(frozen=True)
class MinimalState:
    """One run's state: ``x`` the moving coordinates (``(n,)``, :func:`state_names` order) and ``t`` the
    number of steps taken (int32)."""

    x: jax.Array
    t: jax.Array


jax.tree_util.register_dataclass(MinimalState, data_fields=["x", "t"], meta_fields=[])


def regime_of(params: dict) -> Regime:
    """The smallest regime of a configuration (its parameters must be concrete numbers)."""
    try:
        flags = [bool(np.any(np.asarray(params[k]) != 0)) for k in ("lr_v", "n_S", "n_AUG")]
    except jax.errors.ConcretizationTypeError as error:
        raise ValueError(
            "regime: the parameters are traced; pass regime= (GENERAL covers every configuration)"
        ) from error
    return Regime(*flags)


def state_names(regime: Regime) -> tuple[str, ...]:
    """Names of the regime's moving coordinates (a subset of :func:`reduced_state_names`)."""
    return getattr(_generated, f"STATE_{regime.name}")


def general_index(regime: Regime) -> np.ndarray:
    """Positions of the regime's coordinates in the general 166-coordinate state."""
    return np.asarray(getattr(_generated, f"GENERAL_INDEX_{regime.name}"), dtype=np.int64)


def velocity_fn(regime: Regime):
    """``(x, params) -> (v, loss)``: ``x + v`` is one exact GD step; ``loss`` the training loss at ``x``."""
    return getattr(_generated, f"velocity_{regime.name}")


def probe_fn(regime: Regime):
    """``(x, params) -> (context_reliance, magnitude)`` on the counterfactual probe."""
    return getattr(_generated, f"probe_{regime.name}")


def _f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def initial_state(params: dict, regime: Regime) -> jax.Array:
    """The pretrained state: q = relation_score e_r (+ the initial attention tilt ``context_bias``: every
    context's score up by beta / 2, every subject's down by beta / 2), Delta W_V = 0."""
    names = state_names(regime)
    beta = _f64(params.get("context_bias", 0.0))
    values = {
        "kappa_er": _f64(params["relation_score"]),
        "kappa_thC": beta * SQRT_HALF,
        "kappa_thS": -beta * SQRT_HALF,
    }
    zero = jnp.zeros_like(values["kappa_er"])
    return jnp.stack([values.get(name, zero) for name in names], axis=-1)


def to_general(x, regime: Regime) -> jax.Array:
    """The general 166-coordinate state of a minimal state ``x`` (coordinates that never move are 0)."""
    n_state = _compiled().n_state
    general = jnp.zeros((*x.shape[:-1], n_state), dtype=x.dtype)
    return general.at[..., general_index(regime)].set(x)


def from_general(general, regime: Regime) -> jax.Array:
    return general[..., general_index(regime)]


def _engine(regime: Regime, masked: bool) -> Engine:
    """The engine of one regime. ``inputs = (params, lr_scale, steps)``: ``lr_scale`` None or a ``(S,)``
    array multiplying both learning rates at each step (a schedule); with ``masked``, steps at or after
    ``steps`` (a traced int) leave the state as it is, so one compiled program serves any ``steps`` up to
    its scan length."""
    velocity, probe = velocity_fn(regime), probe_fn(regime)

    def init(inputs):
        params, _, _ = inputs
        return MinimalState(initial_state(params, regime), jnp.zeros((), dtype=jnp.int32))

    def step(state, inputs):
        params, lr_scale, steps = inputs
        v, loss = velocity(state.x, params)
        if lr_scale is not None:
            v = v * lr_scale[jnp.minimum(state.t, lr_scale.shape[0] - 1)]
        x = state.x + v
        if masked:
            x = jnp.where(state.t < steps, x, state.x)
        return MinimalState(x, state.t + 1), loss, {}

    def observe(state, inputs):
        return {"state": state.x}

    def magnitude(state, inputs):
        return probe(state.x, inputs[0])[1]

    return Engine(
        name=f"reduced/{regime.name}",
        init=init,
        step=step,
        observe=observe,
        finish=lambda state, inputs: (state, observe(state, inputs)),
        magnitude=magnitude,
    )


@functools.cache
def minimal_engine(regime: Regime, masked: bool = False) -> Engine:
    return _engine(regime, masked)


def _metrics(states, params, regime: Regime, which: str) -> dict:
    """The records of the recorded states (leading axis = recorded step), one vectorized pass."""
    if which == "context_reliance":
        mc, _ = probe_fn(regime)(states, params)
        return {"context_reliance": mc}
    return jax.vmap(lambda x: reduced_metrics(to_general(x, regime), params))(states)


def _loss_records(states, params, regime: Regime):
    return velocity_fn(regime)(states, params)[1]


@requires_float64
@functools.partial(jax.jit, static_argnames=("steps", "record_every", "regime", "metrics", "masked"))
def _train(params, lr_scale, x0, n_steps, *, steps, record_every, regime, metrics, masked):
    engine = minimal_engine(regime, masked=masked)
    inputs = (params, lr_scale, n_steps)
    state0 = None if x0 is None else MinimalState(x0, jnp.zeros((), dtype=jnp.int32))
    out = run_recorded(engine, inputs, steps=steps, record_every=record_every, state0=state0)
    states = out.records["state"]
    records = _metrics(states, params, regime, metrics)
    return dataclasses.replace(out, records={**records, "state": states})


def _capacity(steps: int) -> int:
    """The scan length that serves ``steps``: the next power of two (at least 64)."""
    return max(64, 1 << (int(steps) - 1).bit_length())


@requires_float64
def minimal_train(
    params: dict,
    *,
    steps: int,
    record_every: int = 1,
    regime: Regime | None = None,
    metrics: str = "all",
    lr_scale=None,
    x0=None,
    compile_per_steps: bool = True,
) -> Recorded:
    """``steps`` exact GD steps of the minimal reduced dynamics, recorded at 0, k, 2k, ... and the last step.

    ``params``: :func:`cpi_theory.reduced.reduced_params` (plus ``context_bias``, the initial attention
    tilt, default 0). ``metrics="all"`` gives the full engine's records; ``"context_reliance"`` only M_C
    (cheaper). ``lr_scale`` (optional, ``(steps,)``) multiplies both learning rates at each step. The
    records also hold ``state`` (the minimal state at each recorded step); ``final_state`` is a
    :class:`MinimalState`.

    With ``compile_per_steps=False`` and no ``lr_scale``, one compiled program serves every ``steps`` up to
    the next power of two: the scan runs that many steps with the ones past ``steps`` masked out (for
    single runs, where compiling costs more than the padding; the records are the same).
    """
    regime = regime_of(params) if regime is None else regime
    if metrics not in ("all", "context_reliance"):
        raise ValueError(f'metrics: must be "all" or "context_reliance", got {metrics!r}')
    if lr_scale is not None:
        lr_scale = _f64(lr_scale)
        if lr_scale.shape != (steps,):
            raise ValueError(f"lr_scale: need one factor per step, shape ({steps},), got {lr_scale.shape}")
    if compile_per_steps or lr_scale is not None or record_every != 1:
        return _train(
            params,
            lr_scale,
            x0,
            jnp.asarray(steps, dtype=jnp.int32),
            steps=steps,
            record_every=record_every,
            regime=regime,
            metrics=metrics,
            masked=False,
        )
    capacity = _capacity(steps)
    out = _train(
        params,
        None,
        x0,
        jnp.asarray(steps, dtype=jnp.int32),
        steps=capacity,
        record_every=1,
        regime=regime,
        metrics=metrics,
        masked=True,
    )
    keep = steps + 1  # records 0..steps; the ones after are copies of the state at ``steps``
    return Recorded(
        records=jax.tree.map(lambda r: r[:keep], out.records),
        final_state=MinimalState(out.final_state.x, jnp.asarray(steps, dtype=jnp.int32)),
        first_nonfinite_step=jnp.where(out.first_nonfinite_step >= steps, -1, out.first_nonfinite_step),
        first_imprecise_step=jnp.minimum(out.first_imprecise_step, steps),
        imprecise_magnitude=out.imprecise_magnitude,
    )


__all__ = ["GENERAL", "REGIMES", "MinimalState", "Regime", "minimal_train"]
