"""cpi_theory: the exact theory of context-parametric inversion in a one-layer attention toy model.

Theory code runs in float64: call :func:`enable_float64` once before using the package (the CLI and the
tests do). See SPEC.md (shared/) for the model; every symbol there has one home here.
"""

from ._config import DATA_CLASSES, Config, resolve_config
from ._errors import ConfigError, DivergenceError, Float64Required
from ._init import pretrained_state
from ._metrics import class_metrics, metrics, probe_metrics
from ._model import (
    ToyState,
    attention,
    context_reliance,
    cross_entropy,
    forward,
    point_losses,
    probe_logits,
    training_loss,
    value_logits,
)
from ._precision import enable_float64, require_float64
from ._simulate import ENGINES, Trajectory, simulate, trajectory_from_records
from ._train import TrainResult, gd_step, recorded_steps, train
from ._world import Vocabulary, World, build_world, embeddings, make_world, value_table

__version__ = "0.1.0"

__all__ = [
    "DATA_CLASSES",
    "ENGINES",
    "Config",
    "ConfigError",
    "DivergenceError",
    "Float64Required",
    "ToyState",
    "TrainResult",
    "Trajectory",
    "Vocabulary",
    "World",
    "attention",
    "build_world",
    "class_metrics",
    "context_reliance",
    "cross_entropy",
    "embeddings",
    "enable_float64",
    "forward",
    "gd_step",
    "make_world",
    "metrics",
    "point_losses",
    "pretrained_state",
    "probe_logits",
    "probe_metrics",
    "recorded_steps",
    "require_float64",
    "resolve_config",
    "simulate",
    "train",
    "training_loss",
    "trajectory_from_records",
    "value_logits",
    "value_table",
]
