"""What an engine is: a few pure functions over a state pytree (jax-md's ``init_fn, step_fn``).

An engine advances one run of exact full-batch gradient descent. Its per-run ``inputs`` (a pytree: the
world and learning rates for the full d x d model, the parameter values for the reduced model) are fixed
during training; its ``state`` is what the step changes. :func:`cpi_theory.engine.run_recorded` is the one
loop that drives every engine, for a single run, a vmapped sweep chunk and the figures' batched runs.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

Inputs = Any
State = Any
Records = dict  # metric name -> array (per_class: metric name -> array over DataClass order)


@dataclasses.dataclass(frozen=True)
class Engine:
    """An exact GD engine. All functions are pure JAX (jit / vmap / grad friendly).

    - ``init(inputs) -> state``: the pretrained state of the run.
    - ``step(state, inputs) -> (state, loss, records)``: one exact GD step; ``loss`` is the training loss
      *before* the step (the loop checks it for divergence) and ``records`` the metrics of the pre-update
      state that the step's forward/backward pass yields for free (``{}`` if none).
    - ``observe(state, inputs) -> records``: the remaining metrics of a state (those ``step`` does not give).
    - ``finish(state, inputs) -> (final_state, records)``: the state handed back to the user and *all*
      metrics of the final state (no step follows it).
    - ``magnitude(state, inputs) -> scalar``: how large the numbers M_C is computed from have grown (for the
      toy: |z_c*| + |z_a*| + sum_y sigma_y |u_y| on the probe); float64 rounds M_C's inputs by about eps
      times it, and the loop stops trusting a run once that exceeds :data:`PRECISION_TOLERANCE`.
    """

    name: str
    init: Callable[[Inputs], State]
    step: Callable[[State, Inputs], tuple[State, Any, Records]]
    observe: Callable[[State, Inputs], Records]
    finish: Callable[[State, Inputs], tuple[Any, Records]]
    magnitude: Callable[[State, Inputs], Any] | None  # None: the engine checks its records itself


# The absolute rounding error (eps * magnitude) that M_C's inputs may carry before a run is reported as
# having lost precision: far below any difference the theory or the figures resolve, far above rounding
# in every configuration the paper and the figures use (magnitudes of order 10 there; the limit is ~4.5e6).
PRECISION_TOLERANCE = 1e-9
