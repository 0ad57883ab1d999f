"""Sweep results: per-run summaries from recorded trajectories, chunk files, and the final labelled Dataset.

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
from ..engine._divergence import first_bad_step
from ..engine._loop import recorded_steps
from ..engine._summary import summarize
from ._faults import fault_point
from ._spec import PER_CLASS_PREFIX, RunTable, SweepSpec

if TYPE_CHECKING:
    import xarray as xr

NETCDF_ENGINE = "scipy"
# xarray is imported where it is used: ``import cpi_theory`` stays light for runs that never sweep.
SUMMARY_VARIABLES = ("start", "peak", "peak_step", "final", "inversion_depth", "diverged", "diverged_step")
CHUNK_DIM = "chunk_run"


def stored_record_indices(spec: SweepSpec) -> np.ndarray:
    """Indices into the recorded steps of the trajectory points a sweep keeps (the last step always)."""
    steps = recorded_steps(spec.base.steps, spec.base.record_every)
    every = spec.stored_every
    if every == 0:
        return np.zeros(0, dtype=np.int64)
    keep = (steps % every == 0) | (steps == steps[-1])
    return np.flatnonzero(keep)


def summarize_runs(
    recorded: np.ndarray, mc: np.ndarray, loss: np.ndarray, first_nonfinite: np.ndarray
) -> dict:
    """Per-run summary variables: the one summary (:func:`cpi_theory.engine.summarize`) of each run's M_C
    and the one divergence check (:func:`cpi_theory.engine.first_bad_step`).

    ``mc`` and ``loss`` are (runs, records). A run diverged when the trainer saw a non-finite loss or a
    recorded M_C or loss is not finite; its summaries are NaN (steps -1) and ``diverged_step`` names the
    first bad step. ``inversion_depth`` (the file's name, kept) is the summary's ``depth``.
    """
    diverged_step = first_bad_step(first_nonfinite, recorded, mc, loss)
    diverged = diverged_step >= 0
    summary = summarize(recorded, mc)
    nan = np.float64(np.nan)
    return {
        "start": np.where(diverged, nan, summary.start),
        "peak": np.where(diverged, nan, summary.peak),
        "peak_step": np.where(diverged, -1, summary.peak_step).astype(np.int32),
        "final": np.where(diverged, nan, summary.final),
        "inversion_depth": np.where(diverged, nan, summary.depth),
        "diverged": diverged,
        "diverged_step": diverged_step,
    }


def summaries_from_online(online: dict, first_nonfinite: np.ndarray, steps: int) -> dict:
    """:func:`summarize_runs`'s variables from an engine's online summary (``start``, ``peak``,
    ``peak_step``, ``final``, ``final_loss``, ``first_nonfinite_reliance``): the same numbers, by the same
    divergence rule (the loop's first non-finite loss, else the first recorded non-finite M_C or final loss)."""
    online = {k: np.asarray(v) for k, v in online.items()}
    counted = np.asarray(first_nonfinite)
    from_records = np.where(
        online["first_nonfinite_reliance"] >= 0,
        online["first_nonfinite_reliance"],
        np.where(np.isfinite(online["final_loss"]), -1, steps),
    )
    diverged_step = np.where(counted >= 0, counted, from_records).astype(np.int32)
    diverged = diverged_step >= 0
    nan = np.float64(np.nan)
    return {
        "start": np.where(diverged, nan, online["start"]),
        "peak": np.where(diverged, nan, online["peak"]),
        "peak_step": np.where(diverged, -1, online["peak_step"]).astype(np.int32),
        "final": np.where(diverged, nan, online["final"]),
        "inversion_depth": np.where(diverged, nan, online["peak"] - online["final"]),
        "diverged": diverged,
        "diverged_step": diverged_step,
    }


def chunk_dataset(
    spec: SweepSpec, run_index: np.ndarray, records: dict, first_nonfinite: np.ndarray
) -> "xr.Dataset":
    """One finished chunk: its runs' summaries and stored trajectories, indexed by global run index."""
    recorded = recorded_steps(spec.base.steps, spec.base.record_every)
    if "summary" in records:  # the engine kept online summaries only (nothing to store but them)
        summary = summaries_from_online(records["summary"], np.asarray(first_nonfinite), spec.base.steps)
    else:
        mc = np.asarray(records["context_reliance"], dtype=np.float64)
        loss = np.asarray(records["loss"], dtype=np.float64)
        summary = summarize_runs(recorded, mc, loss, np.asarray(first_nonfinite))
    data = {name: ((CHUNK_DIM,), values) for name, values in summary.items()}
    keep = stored_record_indices(spec)
    coords = {CHUNK_DIM: np.asarray(run_index, dtype=np.int32)}
    if keep.size:  # summaries only: no step axis (see the module docstring)
        coords["step"] = recorded[keep].astype(np.int32)
    for name in spec.trajectory_metrics if keep.size else ():
        if name.startswith(PER_CLASS_PREFIX):
            values = np.asarray(records["per_class"][name[len(PER_CLASS_PREFIX) :]])[:, keep, :]
            data[name] = ((CHUNK_DIM, "step", "data_class"), values)
        else:
            data[name] = ((CHUNK_DIM, "step"), np.asarray(records[name])[:, keep])
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
    n_stored = stored_record_indices(spec).size
    if n_stored:  # summaries only: no step axis (see the module docstring)
        for name in spec.trajectory_metrics:
            if name.startswith(PER_CLASS_PREFIX):
                variables[name] = (("step", "data_class"), (n_stored, len(DATA_CLASSES)), np.float64)
            else:
                variables[name] = (("step",), (n_stored,), np.float64)
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
        for name, values in self.flat.items():
            values[index] = chunk[name].values
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
        keep = stored_record_indices(self.spec)
        if keep.size:  # absent in a summaries-only sweep
            steps = recorded_steps(self.spec.base.steps, self.spec.base.record_every)
            coords["step"] = ("step", steps[keep].astype(np.int32))
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
