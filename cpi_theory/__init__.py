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

# Parameter sweeps (issue 5).
from ._sweep import SweepResult, run_sweep, sweep  # noqa: E402
from ._sweep_spec import SweepSpec, sweep_spec  # noqa: E402

__all__ += ["SweepResult", "SweepSpec", "run_sweep", "sweep", "sweep_spec"]

# Exact reduced dynamics (issue 3).
from ._reduced import (  # noqa: E402
    ReducedResult,
    reduced_initial_state,
    reduced_metrics,
    reduced_params,
    reduced_state_names,
    reduced_step,
    reduced_train,
)

__all__ += [
    "ReducedResult",
    "reduced_initial_state",
    "reduced_metrics",
    "reduced_params",
    "reduced_state_names",
    "reduced_step",
    "reduced_train",
]

# Figure experiments (issue 4): batched runs, knowledge-consistency statistics, `cpi-theory reproduce`.
from ._phenomena import (  # noqa: E402
    inversion_depth,
    inversion_summary,
    kl_divergence,
    pad_world,
    partial_correlation,
    rank_correlation,
    stack_worlds,
    train_batch,
)
from ._reproduce import reproduce  # noqa: E402

__all__ += [
    "inversion_depth",
    "inversion_summary",
    "kl_divergence",
    "pad_world",
    "partial_correlation",
    "rank_correlation",
    "reproduce",
    "stack_worlds",
    "train_batch",
]

# The paper as code and beyond (issue 3).
from ._analysis import (  # noqa: E402
    inversion_drop,
    inversion_peak,
    phase_boundary,
    plateau,
    value_rate_effect,
)
from ._flow import flow_peak, gradient_flow  # noqa: E402
from ._paper import (  # noqa: E402
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
from ._reduced import reduced_velocity  # noqa: E402

__all__ += [
    "check_assumptions",
    "eta_star",
    "flow_peak",
    "gradient_flow",
    "inversion_drop",
    "inversion_peak",
    "lemma3_value_logits",
    "lemma4_margins",
    "lemma4_values",
    "phase_boundary",
    "plateau",
    "proposition2",
    "proposition3",
    "reduced_velocity",
    "shared_direction_gradient",
    "theorem1",
    "value_rate_effect",
]
