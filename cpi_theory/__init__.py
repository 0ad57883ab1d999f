"""cpi_theory: the exact theory of context-parametric inversion in a one-layer attention toy model.

Theory code runs in float64: call :func:`enable_float64` once before using the package (the CLI and the
tests do). See SPEC.md (shared/) for the model; every symbol there has one home here. Data flows one way:
config -> world -> pretrained state -> engine step -> recorded trajectory -> summary -> experiment data ->
figure. Subpackages, each with one face:

- :mod:`cpi_theory.config`: ``Config`` and the data-class vocabulary ``DataClass``;
- :mod:`cpi_theory.engine`: the engine interface, the one recorded loop, ``Trajectory`` and its summary;
- :mod:`cpi_theory.model` (SPEC §1-4): world, pretrained state, forward pass, metrics, the full engine;
- :mod:`cpi_theory.reduced` (SPEC §6): the sympy-derived reduced dynamics and their engine;
- :mod:`cpi_theory.simulation`: the engine registry and ``simulate``;
- :mod:`cpi_theory.paper` (SPEC §5 and beyond): lemmas, propositions, theorem, flow, peak, plateau, late-time law, boundary;
- :mod:`cpi_theory.phenomena` (SPEC §7), :mod:`cpi_theory.sweep`, :mod:`cpi_theory.figures`,
  :mod:`cpi_theory.cli`, and :mod:`cpi_theory.bridge` (real transformers).

The names below are the everyday ones; each subpackage's face has the rest.
"""

# ruff: noqa: I001  (grouped by concern, in the order data flows, not alphabetically)

# Precision and errors.
from ._errors import ConfigError as ConfigError
from ._errors import DivergenceError as DivergenceError
from ._errors import Float64Required as Float64Required
from ._errors import PrecisionLossError as PrecisionLossError
from ._precision import enable_float64 as enable_float64
from ._precision import require_float64 as require_float64
from ._version import __version__ as __version__

# Configuration and the data-class vocabulary.
from .config import DATA_CLASSES as DATA_CLASSES
from .config import Config as Config
from .config import ClassSizes as ClassSizes
from .config import DataClass as DataClass
from .config import ToyParams as ToyParams
from .config import resolve_config as resolve_config

# The engine interface, the recorded loop and the one result type.
from .engine import Engine as Engine
from .engine import Recorded as Recorded
from .engine import Summary as Summary
from .engine import Trajectory as Trajectory
from .engine import recorded_steps as recorded_steps
from .engine import run_recorded as run_recorded
from .engine import summarize as summarize
from .engine import trajectory_from_records as trajectory_from_records

# The model (SPEC §1-4) and the full engine.
from .model import ToyState as ToyState
from .model import Vocabulary as Vocabulary
from .model import World as World
from .model import build_world as build_world
from .model import context_reliance as context_reliance
from .model import forward as forward
from .model import gd_step as gd_step
from .model import metrics as metrics
from .model import pretrained_state as pretrained_state
from .model import train as train
from .model import training_loss as training_loss
from .model import value_logits as value_logits

# The reduced dynamics (SPEC §6).
from .reduced import reduced_initial_state as reduced_initial_state
from .reduced import reduced_params as reduced_params
from .reduced import reduced_state_names as reduced_state_names
from .reduced import reduced_train as reduced_train

# One run, or many (columns of ToyParams), through a named engine.
from .simulation import Batch as Batch
from .simulation import simulate as simulate
from .simulation import simulate_many as simulate_many

# The paper's results (SPEC §5) and what it left open.
from .paper import check_assumptions as check_assumptions
from .paper import eta_star as eta_star
from .paper import flow_peak as flow_peak
from .paper import gradient_flow as gradient_flow
from .paper import inversion_peak as inversion_peak
from .paper import late_time_law as late_time_law
from .paper import lemma3_value_logits as lemma3_value_logits
from .paper import lemma4_margins as lemma4_margins
from .paper import lemma4_values as lemma4_values
from .paper import phase_boundary as phase_boundary
from .paper import plateau as plateau
from .paper import proposition2 as proposition2
from .paper import proposition3 as proposition3
from .paper import shared_direction_gradient as shared_direction_gradient
from .paper import theorem1 as theorem1
from .paper import value_rate_effect as value_rate_effect

# Sweeps and figures.
from .sweep import SweepResult as SweepResult
from .sweep import SweepSpec as SweepSpec
from .sweep import run_sweep as run_sweep
from .sweep import sweep as sweep
from .sweep import sweep_spec as sweep_spec
from .figures import reproduce as reproduce
