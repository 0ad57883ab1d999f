"""Sweep results streamed into one Zarr store: each finished chunk is written into its region at once.

``cpi-theory sweep SPEC --out results.zarr`` creates the whole store before the first run (every variable
over the spec's dimensions, filled with NaN / -1 / False, its coordinates and attributes, consolidated
metadata), so ``xarray.open_zarr("results.zarr")`` reads it while the sweep runs (lazily: with dask
installed, ``chunks={}`` gives dask arrays for sweeps of any size). Each finished chunk writes its runs'
values into their places (whole boxes of the C-order run grid when its runs are consecutive, a coordinate
selection otherwise), then marks itself in ``chunk_done`` (one flag per chunk of the plan). Zarr's local
store replaces each storage file atomically, so after a kill a chunk's values are either all there with
its flag set, or it is simply computed again: ``--resume`` reads ``chunk_done`` and computes the rest. The
sweep's memory is one chunk's, whatever the number of runs; ``complete`` turns true when every chunk is in.
"""

import math
import pathlib
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .._errors import ConfigError
from ..config._data_class import DATA_CLASSES
from ._faults import fault_point
from ._results import _DESCRIPTIONS, n_stored, recording_of, result_variables
from ._spec import RunTable, SweepSpec

if TYPE_CHECKING:
    import xarray as xr

#: One flag per chunk of the sweep's plan: True once the store holds that chunk's runs.
CHUNK_DONE = "chunk_done"
CHUNK_DIM = "chunk"
# Per chunk, for the summary line of a resumed sweep without reading every run: diverged runs, deepest fall.
CHUNK_DIVERGED = "chunk_diverged"
CHUNK_DEPTH = "chunk_largest_depth"
# Elements per storage chunk of a variable (~8 MB of float64): a few storage files per sweep chunk.
STORAGE_ELEMENTS = 1 << 20
# Consecutive runs are written as boxes of the run grid; scattered runs (several buckets interleaved) by a
# coordinate selection.
_FILL = {np.dtype(np.float64): np.nan, np.dtype(np.int32): -1, np.dtype(bool): False}


def is_zarr(path) -> bool:
    return pathlib.Path(path).suffix.lower() == ".zarr"


def _zarr():
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr is a dependency; a clear message if it was removed
        raise ConfigError("--out", "a .zarr store needs the zarr package (pip install zarr)") from None
    return zarr


def storage_chunks(shape: tuple[int, ...], target: int) -> tuple[int, ...]:
    """Chunk shape of ``shape`` holding about ``target`` elements: whole trailing dimensions first, then a
    part of the next one (C order, so consecutive runs fall into few storage chunks)."""
    chunks = [1] * len(shape)
    inner = 1
    for axis in range(len(shape) - 1, -1, -1):
        if inner * shape[axis] <= target:
            chunks[axis] = max(shape[axis], 1)
            inner *= shape[axis]
        else:
            chunks[axis] = max(1, min(shape[axis], target // max(inner, 1)))
            break
    return tuple(max(c, 1) for c in chunks)


def flat_boxes(start: int, stop: int, shape: tuple[int, ...]) -> list[tuple[tuple[slice, ...], int]]:
    """Boxes of an array of ``shape`` that tile its C-order flat range [start, stop): ``(slices, offset)``
    with ``offset`` the position of the box's first element in the range (at most 2 len(shape) - 1 boxes)."""
    if start >= stop:
        return []
    if not shape:
        return [((), 0)]
    inner = math.prod(shape[1:])
    i0, r0 = divmod(start, inner)
    i1, r1 = divmod(stop, inner)
    rest = shape[1:]
    if i0 == i1:
        return [((slice(i0, i0 + 1), *s), o) for s, o in flat_boxes(r0, r1, rest)]
    boxes = []
    if r0:
        boxes += [((slice(i0, i0 + 1), *s), o) for s, o in flat_boxes(r0, inner, rest)]
        i0 += 1
    if i1 > i0:
        boxes.append(((slice(i0, i1), *(slice(0, n) for n in rest)), i0 * inner - start))
    if r1:
        boxes += [((slice(i1, i1 + 1), *s), i1 * inner - start + o) for s, o in flat_boxes(0, r1, rest)]
    return boxes


class ZarrStore:
    """The Zarr store of one sweep (see the module docstring). Only process 0 of a sweep writes."""

    def __init__(self, path, spec: SweepSpec, table: RunTable, n_chunks: int, chunk_size: int):
        self.path = pathlib.Path(path)
        self.spec = spec
        self.table = table
        self.n_chunks = n_chunks
        self.chunk_size = chunk_size
        self.variables = result_variables(spec)
        self._group = None

    # -- opening --------------------------------------------------------------------------------------------
    def open(self, attrs: dict, resume: bool) -> set[int]:
        """Create the store (or, with ``resume``, reopen it and check it holds this sweep); returns the
        chunks it already holds."""
        zarr = _zarr()
        if self.path.exists() and not resume:
            raise ConfigError("--out", f"{self.path} exists; pass --resume to continue it or remove it")
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError("--out", f"{self.path} is a file, not a Zarr store (a folder)")
        if resume and self.path.exists():
            try:
                group = zarr.open_group(str(self.path), mode="r+")
                fingerprint = group.attrs.get("fingerprint")
            except Exception:  # not a store of ours (or damaged): refuse rather than overwrite
                fingerprint = None
            if fingerprint != attrs["fingerprint"]:
                raise ConfigError(
                    "--resume",
                    f"{self.path} holds a different sweep (spec, engine, chunk size, device count or group "
                    f"size differ; it holds {fingerprint!r}, this sweep is {attrs['fingerprint']!r})",
                )
            self._group = group
            return {int(i) for i in np.flatnonzero(group[CHUNK_DONE][:])}
        self._create(attrs)
        return set()

    def _create(self, attrs: dict) -> None:
        zarr = _zarr()
        group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        dims = tuple(name for name, _ in self.table.dims)
        shape = self.table.shape
        for key, (coord_dims, values) in self.table.coords.items():
            self._array(group, key, coord_dims, np.asarray(values), values.shape)[...] = values
        if n_stored(self.spec):
            steps = recording_of(self.spec).stored_steps.astype(np.int32)
            self._array(group, "step", ("step",), steps, steps.shape)[...] = steps
        if any("data_class" in extra for extra, _, _ in self.variables.values()):
            names = np.asarray(DATA_CLASSES, dtype=str)
            self._array(group, "data_class", ("data_class",), names, names.shape)[...] = names
        for name, (extra_dims, extra_shape, dtype) in self.variables.items():
            per_run = max(math.prod(extra_shape), 1)
            run_chunks = storage_chunks(shape, max(1, min(self.chunk_size, STORAGE_ELEMENTS // per_run)))
            group.create_array(
                name,
                shape=shape + extra_shape,
                chunks=run_chunks + extra_shape,
                dtype=dtype,
                fill_value=_FILL[np.dtype(dtype)],
                dimension_names=dims + extra_dims,
                attributes={"description": _DESCRIPTIONS[name]} if name in _DESCRIPTIONS else {},
            )
        flags = min(self.n_chunks, 1 << 16)
        for name, dtype, fill, doc in (
            (CHUNK_DONE, bool, False, "the store holds this chunk's runs"),
            (CHUNK_DIVERGED, np.int64, 0, "diverged runs in this chunk"),
            (CHUNK_DEPTH, np.float64, np.nan, "largest inversion depth in this chunk"),
        ):
            group.create_array(
                name,
                shape=(self.n_chunks,),
                chunks=(flags,),
                dtype=dtype,
                fill_value=fill,
                dimension_names=(CHUNK_DIM,),
                attributes={"description": doc},
            )
        group.attrs.update({**attrs, "complete": False})
        self._group = group
        self._consolidate()

    @staticmethod
    def _array(group, name, dims, values, shape):
        dtype = str if values.dtype.kind in "UO" else values.dtype
        return group.create_array(name, shape=shape, dtype=dtype, dimension_names=tuple(dims))

    def _consolidate(self) -> None:
        with (
            warnings.catch_warnings()
        ):  # consolidated metadata is not (yet) in the Zarr 3 spec: xarray reads it
            warnings.simplefilter("ignore")
            _zarr().consolidate_metadata(str(self.path))

    # -- writing ----------------------------------------------------------------------------------------------
    def write(self, index: int, runs: np.ndarray, values: dict) -> None:
        """Write one chunk's runs (global indices ``runs``; ``values``: every variable for them), then mark it."""
        group = self._group
        shape = self.table.shape
        runs = np.asarray(runs, dtype=np.int64)
        consecutive = runs.size and runs[-1] - runs[0] + 1 == runs.size and np.all(np.diff(runs) == 1)
        for name in self.variables:
            array, data = group[name], np.asarray(values[name])
            if consecutive:
                for slices, offset in flat_boxes(int(runs[0]), int(runs[-1]) + 1, shape):
                    box = tuple(s.stop - s.start for s in slices)
                    size = math.prod(box)
                    array[slices] = data[offset : offset + size].reshape(box + data.shape[1:])
            else:
                self._scatter(array, runs, data)
            fault_point("write")
        depth = np.asarray(values["inversion_depth"], dtype=np.float64)
        group[CHUNK_DIVERGED][index] = int(np.asarray(values["diverged"]).sum())
        group[CHUNK_DEPTH][index] = np.nanmax(depth) if np.isfinite(depth).any() else np.nan
        group[CHUNK_DONE][index] = True

    def _scatter(self, array, runs: np.ndarray, data: np.ndarray) -> None:
        """Scattered runs: a coordinate selection over the run dimensions (and every trailing position)."""
        shape = self.table.shape
        coords = np.unravel_index(runs, shape) if shape else ()
        extra = data.shape[1:]
        if not extra:
            array.vindex[tuple(coords)] = data
            return
        trailing = np.indices(extra).reshape(len(extra), -1)  # every trailing position, C order
        n = trailing.shape[1]
        full = tuple(np.repeat(c, n) for c in coords) + tuple(np.tile(t, runs.size) for t in trailing)
        array.vindex[full] = data.reshape(-1)

    def finish(self) -> None:
        self._group.attrs["complete"] = True
        self._consolidate()

    def stats(self) -> tuple[int, float]:
        """(diverged runs, largest inversion depth) over the chunks the store holds."""
        done = self._group[CHUNK_DONE][:]
        diverged = int(self._group[CHUNK_DIVERGED][:][done].sum())
        depths = self._group[CHUNK_DEPTH][:][done]
        return diverged, float(np.nanmax(depths)) if np.isfinite(depths).any() else float("nan")


def open_results(path) -> "xr.Dataset":
    """A sweep's Zarr store as an xarray Dataset (lazy: nothing is read until used)."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return xr.open_zarr(str(path), chunks=None)
