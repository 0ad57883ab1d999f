"""The one typed result of a run: :class:`Trajectory` (a frozen dataclass pytree) and its summary."""

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ..config._config import Config
from ..config._data_class import DataClass
from ._loop import recorded_steps
from ._summary import Summary, summarize

# Metrics of the counterfactual test point (the probe) and of each data class, recorded at every record.
PROBE_METRICS = (
    "context_reliance",
    "attention_context",
    "attention_subject",
    "counterfactual_accuracy",
    "parametric_accuracy",
    "loss",
)
CLASS_METRICS = ("loss", "attention_context", "attention_subject", "margin")


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A recorded run. Arrays have one entry per recorded step (``step``).

    ``per_class[name][metric]`` holds per-class series for the classes present in the training set
    (names: :attr:`DataClass.key`; metrics ``loss``, ``attention_context``, ``attention_subject`` and, for
    classes with context, ``margin``). A pytree: ``config`` and ``engine`` are static, the rest are leaves.
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

    def summary(self) -> Summary:
        """Start, peak (and its step), final, depth and shape class of the context reliance M_C."""
        return summarize(self.step, self.context_reliance)

    def summary_line(self) -> str:
        s = self.summary()
        return (
            f"M_C: start {s.start:.3f}, peak {s.peak:.3f} at step {s.peak_step}, "
            f"final {s.final:.3f} at step {s.final_step} ({self.engine} engine)"
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
        s = self.summary()
        out["summary"] = {k: s.to_dict()[k] for k in ("start", "peak", "peak_step", "final", "final_step")}
        return out

    def to_json(self, path: str | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text


jax.tree_util.register_dataclass(
    Trajectory,
    data_fields=[f.name for f in dataclasses.fields(Trajectory) if f.name not in ("config", "engine")],
    meta_fields=["config", "engine"],
)


def trajectory_from_records(config: Config, engine: str, records: Mapping, final_state=None) -> Trajectory:
    """The :class:`Trajectory` of one run's records (as the loop returns them, on host or device)."""
    records = {k: (v if k == "per_class" else np.asarray(v)) for k, v in records.items()}
    counts = config.class_counts()
    per_class = {}
    for data_class in DataClass:
        if counts[data_class.index] == 0:
            continue
        metrics = {m: np.asarray(records["per_class"][m])[:, data_class.index] for m in CLASS_METRICS}
        if not data_class.has_context:
            del metrics["margin"]  # no context: Lemma 2's margin is undefined
        per_class[data_class.key] = metrics
    return Trajectory(
        config=config,
        engine=engine,
        step=recorded_steps(config.steps, config.record_every),
        per_class=per_class,
        final_state=final_state,
        **{name: records[name] for name in PROBE_METRICS},
    )
