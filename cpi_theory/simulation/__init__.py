"""Runs through a named engine: the engine registry, :func:`simulate` (one run) and :func:`simulate_many`
(many runs, as columns of :class:`cpi_theory.ToyParams`)."""

from ._batch import SUMMARY_VARIABLES as SUMMARY_VARIABLES
from ._batch import Batch as Batch
from ._batch import ChunkRunner as ChunkRunner
from ._batch import known_compiler_options as known_compiler_options
from ._batch import simulate_many as simulate_many
from ._batch import use_cpu_cores as use_cpu_cores
from ._registry import ENGINES as ENGINES
from ._registry import TRAJECTORY_METRICS as TRAJECTORY_METRICS
from ._registry import Recording as Recording
from ._registry import RegisteredEngine as RegisteredEngine
from ._registry import RunOutput as RunOutput
from ._registry import get_engine as get_engine
from ._simulate import check_finite as check_finite
from ._simulate import check_precision as check_precision
from ._simulate import simulate as simulate
