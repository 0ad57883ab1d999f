"""``simulate(config)``: a configuration in, a recorded :class:`~cpi_theory.engine.Trajectory` out."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import PrecisionLossError
from .._precision import require_float64
from ..config._config import Config, resolve_config
from ..engine._divergence import first_bad_step, raise_if_diverged
from ..engine._loop import Recorded, recorded_steps
from ..engine._trajectory import Trajectory, trajectory_from_records
from ._registry import get_engine


def check_finite(config: Config, first_nonfinite_step, records: Mapping) -> None:
    """Raise :class:`DivergenceError` naming the first step at which the run stopped being finite."""
    step = recorded_steps(config.steps, config.record_every)
    bad = first_bad_step(first_nonfinite_step, step, records["loss"], records["context_reliance"])
    raise_if_diverged(bad, f"lr_kq={config.lr_kq}, lr_v={config.lr_v}; try smaller learning rates")


def check_precision(config: Config, result: Recorded) -> None:
    """Raise :class:`PrecisionLossError` naming the first recorded step float64 could no longer resolve."""
    step = int(result.first_imprecise_step)
    if step >= 0:
        raise PrecisionLossError(
            step,
            float(result.imprecise_magnitude),
            f"lr_kq={config.lr_kq}, lr_v={config.lr_v}; smaller learning rates or fewer steps keep M_C exact",
        )


def simulate(config: Config | Mapping[str, Any] | None = None, *, engine: str = "full") -> Trajectory:
    """Train the toy model of SPEC.md from its pretrained state and record the trajectory.

    ``config`` is a :class:`Config`, a mapping of overrides of the defaults, or None. ``engine`` names a
    registered engine (``"full"``: the d x d model; ``"reduced"``: the exact reduced dynamics). Needs float64
    (:func:`cpi_theory.enable_float64`). Raises :class:`ConfigError` on bad input and
    :class:`DivergenceError` when the run stops being finite.
    """
    require_float64()
    config = resolve_config(config)
    registered = get_engine(engine)
    result = registered.run_config(config)
    records = {k: (v if k == "per_class" else np.asarray(v)) for k, v in result.records.items()}
    check_finite(config, int(result.first_nonfinite_step), records)
    check_precision(config, result)
    return trajectory_from_records(config, engine, records, final_state=result.final_state)
