"""``simulate(config)``: a configuration in, a recorded trajectory out."""

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._errors import DivergenceError
from .._precision import require_float64
from ..config._config import DATA_CLASSES, Config, resolve_config
from ..model._forward import ToyState
from ..model._metrics import CLASS_METRICS, PROBE_METRICS
from ..model._pretrained import pretrained_state
from ..model._train import recorded_steps, train
from ..model._world import build_world


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A recorded run. Arrays have one entry per recorded step (``step``).

    ``per_class[name][metric]`` holds per-class series for the classes present in the training set
    (names from :data:`cpi_theory.DATA_CLASSES`; metrics ``loss``, ``attention_context``,
    ``attention_subject`` and, for classes with context, ``margin``).
    """

    config: Config
    engine: str
    step: np.ndarray
    context_reliance: np.ndarray
    attention_context: np.ndarray
    attention_subject: np.ndarray
    counterfactual_accuracy: np.ndarray
    parametric_accuracy: np.ndarray
    loss: np.ndarray
    per_class: dict[str, dict[str, np.ndarray]]
    final_state: Any = None

    def summary(self) -> dict[str, float | int]:
        """Start, peak (and its step) and final context reliance."""
        mc = self.context_reliance
        peak = int(np.argmax(mc))
        return {
            "start": float(mc[0]),
            "peak": float(mc[peak]),
            "peak_step": int(self.step[peak]),
            "final": float(mc[-1]),
            "final_step": int(self.step[-1]),
        }

    def summary_line(self) -> str:
        s = self.summary()
        return (
            f"M_C: start {s['start']:.3f}, peak {s['peak']:.3f} at step {s['peak_step']}, "
            f"final {s['final']:.3f} at step {s['final_step']} ({self.engine} engine)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``config`` (every key), the arrays of ``shared/reference/*.json``, and the rest."""
        out: dict[str, Any] = {"config": self.config.to_dict(), "engine": self.engine}
        out["step"] = [int(s) for s in self.step]
        for name in PROBE_METRICS:
            out[name] = [float(v) for v in getattr(self, name)]
        out["per_class"] = {
            cls: {m: [float(v) for v in series] for m, series in metrics.items()}
            for cls, metrics in self.per_class.items()
        }
        out["summary"] = self.summary()
        return out

    def to_json(self, path: str | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text


def trajectory_from_records(config: Config, engine: str, records: Mapping, final_state=None) -> Trajectory:
    """Build a :class:`Trajectory` from recorded metrics (as returned by the trainer), checking divergence."""
    records = {k: (v if k == "per_class" else np.asarray(v)) for k, v in records.items()}
    steps = recorded_steps(config.steps, config.record_every)
    counts = config.class_counts()
    per_class = {}
    for index, name in enumerate(DATA_CLASSES):
        if counts[index] == 0:
            continue
        metrics = {m: np.asarray(records["per_class"][m])[:, index] for m in CLASS_METRICS}
        if name == "subject_only":
            del metrics["margin"]  # no context: Lemma 2's margin is undefined
        per_class[name] = metrics
    return Trajectory(
        config=config,
        engine=engine,
        step=steps,
        per_class=per_class,
        final_state=final_state,
        **{name: records[name] for name in PROBE_METRICS},
    )


def _simulate_full(config: Config) -> Trajectory:
    world = build_world(config)
    result = train(
        world,
        pretrained_state(world, config.relation_score),
        config.lr_kq,
        config.lr_v,
        steps=config.steps,
        record_every=config.record_every,
    )
    check_finite(config, int(result.first_nonfinite_step), np.asarray(result.records["loss"]))
    return trajectory_from_records(config, "full", result.records, final_state=result.final_state)


def check_finite(config: Config, first_nonfinite_step: int, recorded_loss: np.ndarray) -> None:
    """Raise :class:`DivergenceError` naming the first step whose loss is not finite."""
    if first_nonfinite_step < 0:
        bad = np.flatnonzero(~np.isfinite(recorded_loss))
        if bad.size == 0:
            return
        first_nonfinite_step = int(recorded_steps(config.steps, config.record_every)[bad[0]])
    raise DivergenceError(
        first_nonfinite_step, f"lr_kq={config.lr_kq}, lr_v={config.lr_v}; try smaller learning rates"
    )


# Engines by name; each takes a validated Config and returns a Trajectory.
ENGINES: dict[str, Callable[[Config], Trajectory]] = {"full": _simulate_full}


def _simulate_reduced(config: Config) -> Trajectory:
    # Lazy import: the reduced engine imports this module (trajectory_from_records).
    from ..reduced import simulate_reduced

    return simulate_reduced(config)


ENGINES["reduced"] = _simulate_reduced


def simulate(config: Config | Mapping[str, Any] | None = None, *, engine: str = "full") -> Trajectory:
    """Train the toy model of SPEC.md from its pretrained state and record the trajectory.

    ``config`` is a :class:`Config`, a mapping of overrides of the defaults, or None. Needs float64
    (:func:`cpi_theory.enable_float64`). Raises :class:`ConfigError` on bad input and
    :class:`DivergenceError` when the loss becomes non-finite.
    """
    require_float64()
    config = resolve_config(config)
    if engine not in ENGINES:
        from .._errors import ConfigError

        raise ConfigError("engine", f"must be one of {sorted(ENGINES)}, got {engine!r}")
    return ENGINES[engine](config)


__all__ = ["Trajectory", "simulate", "ToyState"]
