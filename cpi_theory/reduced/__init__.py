"""SPEC.md §6: the exact reduced dynamics, derived with sympy (``reduced_model``) and iterated in JAX."""

from ._codegen import REGIMES as REGIMES
from ._codegen import Regime as Regime
from ._compiled import reduced_loss_and_gradient as reduced_loss_and_gradient
from ._compiled import reduced_metrics as reduced_metrics
from ._compiled import reduced_metrics_jit as reduced_metrics_jit
from ._compiled import reduced_velocity as reduced_velocity
from ._compiled import reduced_velocity_jit as reduced_velocity_jit
from ._engine import PARAM_NAMES as PARAM_NAMES
from ._engine import REDUCED_ENGINE as REDUCED_ENGINE
from ._engine import reduced_initial_state as reduced_initial_state
from ._engine import reduced_param_values as reduced_param_values
from ._engine import reduced_params as reduced_params
from ._engine import reduced_state_names as reduced_state_names
from ._engine import reduced_step as reduced_step
from ._engine import reduced_train as reduced_train
from ._minimal import GENERAL as GENERAL
from ._minimal import MinimalState as MinimalState
from ._minimal import minimal_initial_state as minimal_initial_state
from ._minimal import minimal_metrics as minimal_metrics
from ._minimal import minimal_state_names as minimal_state_names
from ._minimal import minimal_summary as minimal_summary
from ._minimal import minimal_train as minimal_train
from ._minimal import minimal_velocity as minimal_velocity
from ._minimal import regime_of as regime_of
from ._symbolic import ReducedModel as ReducedModel
from ._symbolic import reduced_model as reduced_model
