"""Sweep results: per-run summaries from recorded trajectories, chunk files, and the final labelled Dataset.

Files are netCDF written by xarray's ``scipy`` engine (netCDF3, 64-bit offsets): SciPy is already a
dependency, and netCDF3 stores float64 as IEEE-754 doubles, so values round-trip bit for bit (NaN included).
Every file is written to a temporary name in the same folder and then ``os.replace``d into place, so a
file that exists is complete: that is what makes ``--resume`` safe after a kill at any moment.
"""

import json
import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from ..config._data_class import DATA_CLASSES
from ..engine._divergence import first_bad_step
from ..engine._loop import recorded_steps
from ..engine._summary import summarize
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


def chunk_dataset(
    spec: SweepSpec, run_index: np.ndarray, records: dict, first_nonfinite: np.ndarray
) -> "xr.Dataset":
    """One finished chunk: its runs' summaries and stored trajectories, indexed by global run index."""
    recorded = recorded_steps(spec.base.steps, spec.base.record_every)
    mc = np.asarray(records["context_reliance"], dtype=np.float64)
    loss = np.asarray(records["loss"], dtype=np.float64)
    summary = summarize_runs(recorded, mc, loss, np.asarray(first_nonfinite))
    data = {name: ((CHUNK_DIM,), values) for name, values in summary.items()}
    keep = stored_record_indices(spec)
    for name in spec.trajectory_metrics:
        if name.startswith(PER_CLASS_PREFIX):
            values = np.asarray(records["per_class"][name[len(PER_CLASS_PREFIX) :]])[:, keep, :]
            data[name] = ((CHUNK_DIM, "step", "data_class"), values)
        else:
            data[name] = ((CHUNK_DIM, "step"), np.asarray(records[name])[:, keep])
    coords = {CHUNK_DIM: np.asarray(run_index, dtype=np.int32), "step": recorded[keep].astype(np.int32)}
    import xarray as xr

    return xr.Dataset(data, coords=coords)


def write_atomic(dataset: "xr.Dataset", path: pathlib.Path) -> None:
    """Write ``dataset`` to ``path`` so that ``path`` either does not exist or holds the whole file."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        dataset.to_netcdf(tmp, engine=NETCDF_ENGINE)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(data: dict, path: pathlib.Path) -> None:
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load(path) -> "xr.Dataset":
    """Read a sweep (or chunk) file fully into memory and close it."""
    import xarray as xr

    return xr.load_dataset(path, engine=NETCDF_ENGINE)


def assemble(spec: SweepSpec, table: RunTable, chunks: list, attrs: dict) -> "xr.Dataset":
    """Scatter the chunks' runs into arrays over the spec's dimensions: the sweep's labelled result."""
    import xarray as xr

    n_total = len(table.configs)
    dim_names = tuple(name for name, _ in table.dims)
    shape = tuple(size for _, size in table.dims)
    first = chunks[0]
    steps = first["step"].values
    filled = np.zeros(n_total, dtype=bool)
    flat = {}
    for name, var in first.data_vars.items():
        fill = -1 if var.dtype.kind == "i" else (False if var.dtype.kind == "b" else np.nan)
        flat[name] = np.full((n_total,) + var.shape[1:], fill, dtype=var.dtype)
    for chunk in chunks:
        index = chunk[CHUNK_DIM].values
        filled[index] = True
        for name in flat:
            flat[name][index] = chunk[name].values
    if not filled.all():
        raise RuntimeError(f"sweep results are missing {int((~filled).sum())} runs")  # a bug, not bad input
    data_vars = {}
    for name, values in flat.items():
        extra = first[name].dims[1:]
        data_vars[name] = (dim_names + extra, values.reshape(shape + values.shape[1:]))
    coords = {key: (dims, values) for key, (dims, values) in table.coords.items()}
    coords["step"] = ("step", steps)
    if any(name.startswith(PER_CLASS_PREFIX) for name in spec.trajectory_metrics):
        coords["data_class"] = ("data_class", np.asarray(DATA_CLASSES))
    dataset = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    for name, doc in _DESCRIPTIONS.items():
        if name in dataset:
            dataset[name].attrs["description"] = doc
    return dataset


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
