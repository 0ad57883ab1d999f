"""``simulate(config)``: a configuration in, a recorded :class:`~cpi_theory.engine.Trajectory` out."""

import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import PrecisionLossError
from .._interrupt import raise_if_interrupted
from .._precision import require_float64
from ..config._config import Config, resolve_config
from ..engine._divergence import first_bad_step, raise_if_diverged
from ..engine._loop import Recorded, recorded_steps
from ..engine._trajectory import Trajectory, trajectory_from_records
from ._memory import check_simulate_memory
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


# A run still going after this many seconds shows its elapsed time on stderr: every second on a terminal,
# every minute in a log file.
PROGRESS_AFTER_SECONDS = 5.0


def wait_for(result, *, label: str = "", progress: bool = False) -> None:
    """Wait for the (asynchronously dispatched) arrays of ``result`` in Python, not inside XLA, so that Ctrl-C
    interrupts a long run at once; with ``progress``, a run still going after
    :data:`PROGRESS_AFTER_SECONDS` shows its elapsed time on stderr until it is done."""
    import jax

    leaves = [x for x in jax.tree.leaves(result) if hasattr(x, "is_ready")]
    started = time.monotonic()
    terminal = sys.stderr.isatty()
    shown = None  # when the progress line was last written
    pause = 1e-4  # polls start fast (a short run is not delayed) and slow down to every 20 ms
    while not all(x.is_ready() for x in leaves):
        raise_if_interrupted()
        time.sleep(pause)
        pause = min(2 * pause, 0.02)
        elapsed = time.monotonic() - started
        every = 1.0 if terminal else 60.0
        if progress and elapsed > PROGRESS_AFTER_SECONDS and (shown is None or elapsed - shown >= every):
            minutes, seconds = divmod(int(elapsed), 60)
            line = f"{label}: running, {minutes}:{seconds:02d} elapsed"
            sys.stderr.write(f"\r{line}" if terminal else f"{line}\n")
            sys.stderr.flush()
            shown = elapsed
    if shown is not None and terminal:
        sys.stderr.write("\n")
    raise_if_interrupted()


def simulate(
    config: Config | Mapping[str, Any] | None = None, *, engine: str = "full", progress: bool = False
) -> Trajectory:
    """Train the toy model of SPEC.md from its pretrained state and record the trajectory.

    ``config`` is a :class:`Config`, a mapping of overrides of the defaults, or None. ``engine`` names a
    registered engine (``"full"``: the d x d model; ``"reduced"``: the exact reduced dynamics). Needs float64
    (:func:`cpi_theory.enable_float64`). Raises :class:`ConfigError` on bad input and
    :class:`DivergenceError` when the run stops being finite; a run that cannot fit in memory is refused
    with a :class:`ConfigError` naming the key (:mod:`cpi_theory.simulation._memory`). With ``progress``, a
    long run shows its elapsed time on stderr.
    """
    require_float64()
    config = resolve_config(config)
    registered = get_engine(engine)
    check_simulate_memory(config, engine)  # refuse before allocating what cannot fit
    result = registered.run_config(config)
    wait_for(result, label=f"simulate: {config.steps} steps ({engine} engine)", progress=progress)
    records = {k: (v if k == "per_class" else np.asarray(v)) for k, v in result.records.items()}
    check_finite(config, int(result.first_nonfinite_step), records)
    check_precision(config, result)
    return trajectory_from_records(config, engine, records, final_state=result.final_state)
