"""Sweep results in netCDF: chunk files and the final labelled Dataset (for Zarr stores see ``_zarr``).

Files are netCDF written by xarray's ``scipy`` engine (netCDF3, 64-bit offsets): SciPy is already a
dependency, and netCDF3 stores float64 as IEEE-754 doubles, so values round-trip bit for bit (NaN included).
Every file is written to a temporary name in the same folder and then ``os.replace``d into place, so a
file that exists is complete: that is what makes ``--resume`` safe after a kill at any moment.

A summaries-only sweep (``trajectory_every: 0``) stores no trajectory points. netCDF3 cannot hold a
zero-length dimension (length 0 means "unlimited", the record dimension, which must come first), so such
a file has no ``step`` axis and no trajectory variables at all rather than empty ones: SciPy's reader
cannot read a zero-length ``step`` back.
"""

import json
import math
import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from .._atomic import replace_atomically
from .._errors import ConfigError
from ..config._data_class import DATA_CLASSES
from ..simulation._batch import SUMMARY_VARIABLES as SUMMARY_VARIABLES
from ..simulation._registry import Recording
from ._faults import fault_point
from ._spec import PER_CLASS_PREFIX, RunTable, SweepSpec

if TYPE_CHECKING:
    import xarray as xr

NETCDF_ENGINE = "scipy"
# xarray is imported where it is used: ``import cpi_theory`` stays light for runs that never sweep.
CHUNK_DIM = "chunk_run"


def recording_of(spec: SweepSpec) -> Recording:
    """What a sweep keeps of each run (the summary over every recorded step, the stored trajectory)."""
    return Recording(spec.base.steps, spec.base.record_every, spec.stored_every, spec.trajectory_metrics)


def n_stored(spec: SweepSpec) -> int:
    """Stored trajectory points per run (0, every ``trajectory_every``-th step, and the last)."""
    every = spec.stored_every
    return 0 if every == 0 else n_recorded(spec.base.steps, every)


def n_recorded(steps: int, every: int) -> int:
    """How many of the steps 0, every, 2 every, ... and the last there are (without listing them)."""
    return steps // every + 1 + (1 if steps % every else 0)


def chunk_dataset(spec: SweepSpec, run_index: np.ndarray, summary: dict, trajectory: dict) -> "xr.Dataset":
    """One finished chunk: its runs' summaries and stored trajectories, indexed by global run index."""
    data = {name: ((CHUNK_DIM,), values) for name, values in summary.items()}
    coords = {CHUNK_DIM: np.asarray(run_index, dtype=np.int32)}
    if trajectory:  # summaries only: no step axis (see the module docstring)
        coords["step"] = recording_of(spec).stored_steps.astype(np.int32)
    for name, values in trajectory.items():
        dims = (CHUNK_DIM, "step", "data_class") if name.startswith(PER_CLASS_PREFIX) else (CHUNK_DIM, "step")
        data[name] = (dims, np.asarray(values))
    import xarray as xr

    return xr.Dataset(data, coords=coords)


def check_netcdf_limits(spec: SweepSpec, n_total: int) -> None:
    """Refuse, before any work, a results file that netCDF3 (64-bit offsets) cannot hold: a dimension
    beyond 2**31 - 1 or a variable of 4 GiB or more."""
    if n_total > _NETCDF_MAX_DIM:
        raise ConfigError(
            "grid", f"the sweep has {n_total} runs; a netCDF3 file holds at most {_NETCDF_MAX_DIM}"
        )
    for name, (_, extra_shape, dtype) in result_variables(spec).items():
        size = n_total * math.prod(extra_shape) * np.dtype(dtype).itemsize
        if size >= _NETCDF_MAX_VARIABLE:
            key = "trajectory_every" if extra_shape else "grid"
            raise ConfigError(
                key,
                f"the results variable {name} would take {size / 2**30:.3g} GiB for {n_total} runs; a netCDF3 "
                'variable must stay below 4 GiB: use a larger trajectory_every ("trajectory_every": 0 keeps '
                "summaries only) or split the sweep into smaller specs",
            )


def write_atomic(dataset: "xr.Dataset", path: pathlib.Path, drill: str = "write") -> None:
    """Write ``dataset`` to ``path`` so that ``path`` either does not exist or holds the whole file."""
    path = pathlib.Path(path)

    def write(tmp: pathlib.Path) -> None:
        dataset.to_netcdf(tmp, engine=NETCDF_ENGINE)
        fault_point(drill, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())

    replace_atomically(path, write, _temporary(path))


def write_json_atomic(data: dict, path: pathlib.Path) -> None:
    path = pathlib.Path(path)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    replace_atomically(path, lambda tmp: tmp.write_text(text), _temporary(path))


def _temporary(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temporaries(folder: pathlib.Path, name: str = "*") -> None:
    """Remove the temporary files that killed writers of ``folder/name`` left (their process is gone)."""
    for tmp in pathlib.Path(folder).glob(f".{name}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(path) -> "xr.Dataset":
    """Read a sweep (or chunk) file fully into memory and close it."""
    import xarray as xr

    return xr.load_dataset(path, engine=NETCDF_ENGINE)


def result_variables(spec: SweepSpec) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], type]]:
    """The variables of a sweep's results: name -> (dimensions after the swept ones, their sizes, dtype)."""
    variables: dict[str, tuple[tuple[str, ...], tuple[int, ...], type]] = {
        name: ((), (), dtype) for name, dtype in _SUMMARY_DTYPES.items()
    }
    stored = n_stored(spec)
    if stored:  # summaries only: no step axis (see the module docstring)
        for name in spec.trajectory_metrics:
            if name.startswith(PER_CLASS_PREFIX):
                variables[name] = (("step", "data_class"), (stored, len(DATA_CLASSES)), np.float64)
            else:
                variables[name] = (("step",), (stored,), np.float64)
    return variables


class ResultArrays:
    """Every run's results, one flat array per variable, filled chunk by chunk: memory is the results
    themselves (the chunks are not kept), whatever the number of chunks."""

    def __init__(self, spec: SweepSpec, table: RunTable):
        self.spec = spec
        self.table = table
        self.filled = np.zeros(table.n_total, dtype=bool)
        self.flat = {}
        for name, (_, extra_shape, dtype) in result_variables(spec).items():
            fill = -1 if np.dtype(dtype).kind == "i" else (False if dtype is bool else np.nan)
            self.flat[name] = np.full((table.n_total, *extra_shape), fill, dtype=dtype)

    def add(self, chunk: "xr.Dataset") -> None:
        """Scatter one chunk's runs into place (by their global run index)."""
        index = np.asarray(chunk[CHUNK_DIM].values, dtype=np.int64)
        self.put(index, {name: chunk[name].values for name in self.flat})

    def put(self, index: np.ndarray, values: dict) -> None:
        """Scatter the runs ``index`` (global run indices) into place: ``values`` maps every variable to
        its values for those runs."""
        for name, flat in self.flat.items():
            flat[index] = values[name]
        self.filled[index] = True

    def to_dataset(self, attrs: dict) -> "xr.Dataset":
        """The labelled results: every variable over the spec's dimensions."""
        import xarray as xr

        if not self.filled.all():
            raise RuntimeError(f"sweep results are missing {int((~self.filled).sum())} runs")  # a bug
        dim_names = tuple(name for name, _ in self.table.dims)
        shape = self.table.shape
        variables = result_variables(self.spec)
        data_vars = {
            name: (dim_names + variables[name][0], values.reshape(shape + values.shape[1:]))
            for name, values in self.flat.items()
        }
        coords = {key: (dims, values) for key, (dims, values) in self.table.coords.items()}
        if n_stored(self.spec):  # absent in a summaries-only sweep
            coords["step"] = ("step", recording_of(self.spec).stored_steps.astype(np.int32))
        if any("data_class" in dims for dims, _, _ in variables.values()):
            # object strings, as a netCDF file reads back (the file's bytes are the same either way)
            coords["data_class"] = ("data_class", np.asarray(DATA_CLASSES, dtype=object))
        dataset = xr.Dataset(data_vars, coords=coords, attrs=attrs)
        for name, doc in _DESCRIPTIONS.items():
            if name in dataset:
                dataset[name].attrs["description"] = doc
        return dataset


def assemble(spec: SweepSpec, table: RunTable, chunks: list, attrs: dict) -> "xr.Dataset":
    """Scatter the chunks' runs into arrays over the spec's dimensions: the sweep's labelled result."""
    results = ResultArrays(spec, table)
    for chunk in chunks:
        results.add(chunk)
    return results.to_dataset(attrs)


_SUMMARY_DTYPES = {
    "start": np.float64,
    "peak": np.float64,
    "peak_step": np.int32,
    "final": np.float64,
    "inversion_depth": np.float64,
    "diverged": bool,
    "diverged_step": np.int32,
}
# netCDF3 with 64-bit offsets: 32-bit signed dimension lengths, and every variable (but the last) below 4 GiB.
_NETCDF_MAX_DIM = 2**31 - 1
_NETCDF_MAX_VARIABLE = 2**32 - 4

_DESCRIPTIONS = {
    "start": "context reliance M_C at step 0 (NaN if the run diverged)",
    "peak": "largest recorded M_C (NaN if the run diverged)",
    "peak_step": "step of the largest recorded M_C (-1 if the run diverged)",
    "final": "M_C at the last step (NaN if the run diverged)",
    "inversion_depth": "peak - final: how far M_C falls back after its peak (NaN if the run diverged)",
    "diverged": "the loss or M_C became non-finite",
    "diverged_step": "first step with a non-finite loss (-1 if none)",
    "context_reliance": "M_C = p(c*) / (p(c*) + p(a*)) on the counterfactual test point",
}
