"""The reduced engine: the exact class-level dynamics of :mod:`cpi_theory.reduced._symbolic`, lambdified to JAX.

Public API (what sweeps call)::

    params = reduced_params(config)            # ToyParams of float64 0-d arrays (see below)
    out = reduced_train(params, steps=300, record_every=1)
    out.records        # same keys and shapes as the full trainer's records (per_class: (R, 4) arrays)
    out.final_state    # (166,) reduced state, names in reduced_state_names()
    out.first_nonfinite_step

A :class:`cpi_theory.ToyParams` holds every number the dynamics depend on: the class sizes (real numbers
allowed), the vocabulary sizes K_A, K_S, ``o_c, o_r, delta_c, delta_m``, ``relation_score``, ``lr_kq``,
``lr_v`` and the initial tilt ``context_bias``. All are traced float64 scalars, so configurations of any
vocabulary or class size share one compilation per ``(steps, record_every)`` and ``jax.vmap`` over a
stacked params pytree runs a batch of configurations. The cost of a step does not depend on the vocabulary
or class sizes: they enter only as multiplicities.

Real class sizes: the reduced dynamics are polynomial/analytic in the class sizes, so a real ``n_k`` is a
mixture weight: the loss is ``sum_k n_k loss_k / sum_k n_k`` and a point sees ``n_l`` tokens of each role
of class ``l`` (``n_k - 1`` of its own class). At integer sizes this is exactly the full model. For
``0 < n_k < 1`` the own-class multiplicity ``n_k - 1`` is negative: still the analytic continuation, but no
longer a data set of points. ``per_class`` records follow :data:`cpi_theory.DATA_CLASSES` order and hold NaN
for classes of size 0 (as the full engine does); S points have no margin (NaN).
"""

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import requires_float64
from ..config._config import Config, resolve_config
from ..config._params import ToyParams
from ..engine._interface import Engine
from ..engine._loop import Recorded, run_recorded
from ._compiled import _compiled, _forward, reduced_metrics, reduced_velocity, reduced_velocity_jit
from ._inputs import PARAM_NAMES as PARAM_NAMES
from ._inputs import as_float64, symbol_values
from ._minimal import (
    GENERAL,
    Regime,
    from_general,
    general_index,
    initial_state,
    minimal_train,
    regime_of,
    to_general,
)
from ._symbolic import reduced_model


@requires_float64
def reduced_params(config: Config | Mapping | None = None, *, context_bias=0.0) -> ToyParams:
    """One run's :class:`cpi_theory.ToyParams` as float64 0-d arrays, from a :class:`Config` (or a mapping
    of overrides, or None: the defaults).

    Columns of many runs: :meth:`ToyParams.from_columns` or :meth:`ToyParams.stack` (then ``jax.vmap``).
    """
    return as_float64(ToyParams.from_config(resolve_config(config), context_bias=context_bias))


def reduced_state_names() -> tuple[str, ...]:
    """Names of the reduced state coordinates (``kappa_*``: q = W_KQ phi(r); ``w_*``: Delta W_V orbits)."""
    return tuple(str(s) for s in reduced_model().state)


@requires_float64
def reduced_initial_state(params: ToyParams) -> jax.Array:
    """The pretrained state: q = relation_score * e_r (plus the tilt ``context_bias``), Delta W_V = 0."""
    return to_general(initial_state(params, GENERAL), GENERAL)


def _gradient_step(state, params):
    """One exact GD step on the reduced state: the new state, the loss before the step, no free records
    (the reduced metrics are computed by ``observe`` only where a record is kept)."""
    velocity, loss = reduced_velocity(state, params)
    return state + velocity, loss, {}


def reduced_magnitude(state, params: ToyParams):
    """|z_c*| + |z_a*| + sum_y sigma_y |u_y| on the probe (as the full engine's ``probe_magnitude``)."""
    probe = _forward(state, symbol_values(params), ("probe",)).probe
    roles = _compiled().groups["probe"].roles
    gap_terms = jnp.abs(probe.z[roles.index("c*")]) + jnp.abs(probe.z[roles.index("a*")])
    return gap_terms + jnp.sum(probe.sigma * jnp.abs(probe.u))


# The general form: all 166 coordinates in every regime (the check the minimal engine is derived from).
GENERAL_ENGINE = Engine(
    name="reduced-general",
    init=reduced_initial_state,
    step=_gradient_step,
    observe=reduced_metrics,
    finish=lambda state, params: (state, reduced_metrics(state, params)),
    magnitude=reduced_magnitude,
)


@requires_float64
@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def general_train(params: ToyParams, *, steps: int, record_every: int = 1, state0=None) -> Recorded:
    """The general 166-coordinate form of the reduced dynamics (dense coefficient tensors, every coordinate
    in every regime): the check :func:`reduced_train` is tested against. Same arguments and records."""
    params = as_float64(params)
    return run_recorded(GENERAL_ENGINE, params, steps=steps, record_every=record_every, state0=state0)


def _regime_for(params: ToyParams, state0) -> Regime:
    """The minimal regime of concrete parameters whose coordinates hold ``state0``; GENERAL (every
    coordinate) for traced parameters or a ``state0`` with values outside the regime's coordinates."""
    try:
        regime = regime_of(params)
    except ValueError:
        return GENERAL
    if state0 is not None:
        try:
            outside = np.delete(np.asarray(state0), general_index(regime), axis=-1)
        except jax.errors.TracerArrayConversionError:
            return GENERAL
        if np.any(outside != 0):
            return GENERAL
    return regime


@requires_float64
def reduced_train(params: ToyParams, *, steps: int, record_every: int = 1, state0=None) -> Recorded:
    """Run ``steps`` exact GD updates of the reduced dynamics, recording at 0, k, 2k, ... and the last step.

    ``params``: a :class:`cpi_theory.ToyParams` (:func:`reduced_params`; vmappable over columns).
    ``state0`` (a general 166-coordinate state) defaults to the pretrained state. The records have the keys
    of the full engine's (``context_reliance``, ..., ``loss``, ``per_class`` with (R, 4) arrays); the final
    state is the general state vector. Runs the minimal engine of the parameters' regime
    (:func:`cpi_theory.reduced.minimal_train`; GENERAL under ``jax.vmap`` / ``jax.grad``, where the
    parameters are traced).
    """
    regime = _regime_for(params, state0)
    x0 = None if state0 is None else from_general(jnp.asarray(state0, dtype=jnp.float64), regime)
    out = minimal_train(params, steps=steps, record_every=record_every, regime=regime, x0=x0)
    records = {k: v for k, v in out.records.items() if k != "state"}
    return dataclasses.replace(out, records=records, final_state=to_general(out.final_state.x, regime))


@requires_float64
def reduced_step(state, params):
    """One exact GD step: ``(new_state, loss_before)`` (the jitted velocity plus the state)."""
    velocity, loss = reduced_velocity_jit(state, params)
    return state + velocity, loss
