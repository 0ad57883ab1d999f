"""The engine interface, the one recorded loop and the one curve summary.

An :class:`Engine` is ``init / step / observe / finish`` over a state pytree; :func:`run_recorded` is the
only loop; :func:`summarize` gives the start / peak / final / depth / shape of any context-reliance curve.
"""

from ._divergence import first_bad_step as first_bad_step
from ._divergence import raise_if_diverged as raise_if_diverged
from ._interface import Engine as Engine
from ._loop import Recorded as Recorded
from ._loop import recorded_steps as recorded_steps
from ._loop import run_batched as run_batched
from ._loop import run_recorded as run_recorded
from ._summary import DEFAULT_TOL as DEFAULT_TOL
from ._summary import SHAPES as SHAPES
from ._summary import Summary as Summary
from ._summary import classify_shape as classify_shape
from ._summary import classify_shapes as classify_shapes
from ._summary import summarize as summarize
from ._trajectory import CLASS_METRICS as CLASS_METRICS
from ._trajectory import PROBE_METRICS as PROBE_METRICS
from ._trajectory import Trajectory as Trajectory
from ._trajectory import trajectory_from_records as trajectory_from_records
