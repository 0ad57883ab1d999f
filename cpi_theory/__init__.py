"""cpi_theory: the exact theory of context-parametric inversion in a one-layer attention toy model.

Theory code runs in float64: call :func:`enable_float64` once before using the package (the CLI and the
tests do). See SPEC.md (shared/) for the model; every symbol there has one home here.

- Foundation: ``Config``, the world, the pretrained state, the model, the exact GD trainer, ``simulate``.
- Theory: the sympy-derived reduced dynamics (``reduced_*``), the paper's results (``eta_star``,
  ``theorem1``, ...), the gradient flow and what the paper left open (``inversion_peak``, ``plateau``,
  ``phase_boundary``, ``value_rate_effect``).
- Sweeps: ``sweep_spec``, ``sweep``, ``run_sweep`` (vmapped, sharded, resumable, xarray results).
- Figures: ``reproduce`` and the batched helpers of the experiments.
- The bridge to real transformers lives in the subpackage :mod:`cpi_theory.bridge`.
"""

from ._errors import ConfigError, DivergenceError, Float64Required
from ._precision import enable_float64, require_float64
from ._version import __version__ as __version__
from .config._config import DATA_CLASSES, Config, resolve_config
from .figures._reproduce import reproduce
from .model._forward import (
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
from .model._metrics import class_metrics, metrics, probe_metrics
from .model._pretrained import pretrained_state
from .model._train import TrainResult, gd_step, recorded_steps, train
from .model._world import Vocabulary, World, build_world, embeddings, make_world, value_table
from .paper._analysis import inversion_drop, inversion_peak, phase_boundary, plateau, value_rate_effect
from .paper._flow import flow_peak, gradient_flow
from .paper._paper import (
    check_assumptions,
    eta_star,
    lemma3_value_logits,
    lemma4_margins,
    lemma4_values,
    proposition2,
    proposition3,
    shared_direction_gradient,
    theorem1,
)
from .phenomena._batch import (
    inversion_depth,
    inversion_summary,
    kl_divergence,
    pad_world,
    partial_correlation,
    rank_correlation,
    stack_worlds,
    train_batch,
)
from .reduced import (
    ReducedResult,
    reduced_initial_state,
    reduced_metrics,
    reduced_params,
    reduced_state_names,
    reduced_step,
    reduced_train,
    reduced_velocity,
)
from .simulation._simulate import ENGINES, Trajectory, simulate, trajectory_from_records
from .sweep._runner import SweepResult, run_sweep, sweep
from .sweep._spec import SweepSpec, sweep_spec

__all__ = [
    "DATA_CLASSES",
    "ENGINES",
    "Config",
    "ConfigError",
    "DivergenceError",
    "Float64Required",
    "ReducedResult",
    "SweepResult",
    "SweepSpec",
    "ToyState",
    "TrainResult",
    "Trajectory",
    "Vocabulary",
    "World",
    "attention",
    "build_world",
    "check_assumptions",
    "class_metrics",
    "context_reliance",
    "cross_entropy",
    "embeddings",
    "enable_float64",
    "eta_star",
    "flow_peak",
    "forward",
    "gd_step",
    "gradient_flow",
    "inversion_depth",
    "inversion_drop",
    "inversion_peak",
    "inversion_summary",
    "kl_divergence",
    "lemma3_value_logits",
    "lemma4_margins",
    "lemma4_values",
    "make_world",
    "metrics",
    "pad_world",
    "partial_correlation",
    "phase_boundary",
    "plateau",
    "point_losses",
    "pretrained_state",
    "probe_logits",
    "probe_metrics",
    "proposition2",
    "proposition3",
    "rank_correlation",
    "recorded_steps",
    "reduced_initial_state",
    "reduced_metrics",
    "reduced_params",
    "reduced_state_names",
    "reduced_step",
    "reduced_train",
    "reduced_velocity",
    "reproduce",
    "require_float64",
    "resolve_config",
    "run_sweep",
    "shared_direction_gradient",
    "simulate",
    "stack_worlds",
    "sweep",
    "sweep_spec",
    "theorem1",
    "train",
    "train_batch",
    "training_loss",
    "trajectory_from_records",
    "value_logits",
    "value_rate_effect",
    "value_table",
]
