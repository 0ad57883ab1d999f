"""Parameter sweeps: specs, their run tables (columns of parameters, no object per run), shape buckets,
chunks on the devices, resumable labelled results in memory, netCDF or a Zarr store."""

from ._results import load as load
from ._runner import SweepResult as SweepResult
from ._runner import run_sweep as run_sweep
from ._runner import sweep as sweep
from ._spec import RunTable as RunTable
from ._spec import SweepSpec as SweepSpec
from ._spec import build_run_table as build_run_table
from ._spec import sweep_spec as sweep_spec
from ._zarr import open_results as open_results
