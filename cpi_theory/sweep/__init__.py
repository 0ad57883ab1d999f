"""Parameter sweeps: specs, shape buckets, vmapped and sharded chunks, resumable labelled results."""

from ._results import load as load
from ._runner import SweepResult as SweepResult
from ._runner import run_sweep as run_sweep
from ._runner import sweep as sweep
from ._spec import SweepSpec as SweepSpec
from ._spec import sweep_spec as sweep_spec
