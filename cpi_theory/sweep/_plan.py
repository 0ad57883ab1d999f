"""Chunks of a sweep: runs grouped by shape bucket and cut into fixed-size chunks, without a Config per run.

A chunk holds consecutive runs (C order) of one bucket; buckets come in the sorted order of their keys and
chunks are numbered bucket by bucket, so chunk i is the same runs however often the sweep is started or
resumed. Planning counts each bucket's runs over the grid of only the dimensions its key depends on (for
the reduced engine: lr_v, n_subject_only and n_counterfactual_augmented, which pick its regime); the chunks themselves are cut while the sweep runs
(:meth:`ChunkPlan.chunks`), one block of runs at a time. A 10^8-run sweep plans in seconds, in memory
bounded by the block size and the number of buckets.
"""

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from ..simulation._registry import RegisteredEngine
from ._spec import RunTable, grid_blocks


@dataclasses.dataclass(frozen=True)
class Chunk:
    index: int
    bucket: tuple
    runs: np.ndarray  # global run indices (not padded)


# Sub-grids up to this many points keep a bucket index per point (8 bytes each).
_KEPT_SUB_GRID = 1 << 22


class ChunkPlan:
    """The buckets of a sweep, their sizes, and the chunks they are cut into (``chunk_size`` runs each)."""

    def __init__(self, table: RunTable, engine: RegisteredEngine, chunk_size: int):
        self.table = table
        self.chunk_size = chunk_size
        # The engine's bucket key on float64 columns: (the Config keys it reads, their bucket columns, one
        # row of those -> the key); it equals the engine's bucket of each run (tests/test_sweep.py checks).
        self._engine = engine
        self._columns = (engine.bucket_reads, engine.bucket_columns, engine.bucket_key)
        self._axes = tuple(sorted({a for key in engine.bucket_reads for a in table.axes_of(key)}))
        sizes: dict[tuple, int] = {}
        for flat, coords in grid_blocks(table, self._axes):
            for key, count in zip(*self._keys_and_counts(flat, coords), strict=True):
                sizes[key] = sizes.get(key, 0) + count
        # Every point of the key's sub-grid stands for the same number of runs (the other dimensions).
        per_point = table.n_total // math.prod(table.shape[a] for a in self._axes)
        self.buckets = tuple(sorted(sizes))
        self.bucket_sizes = tuple(sizes[key] * per_point for key in self.buckets)
        self._id = {key: i for i, key in enumerate(self.buckets)}
        # The bucket of every point of the key's sub-grid, where that grid is small enough to keep: a run's
        # bucket is then a lookup of its position on those dimensions.
        self._sub_shape = tuple(table.shape[a] for a in self._axes)
        self._sub_ids = None
        if len(self.buckets) > 1 and math.prod(self._sub_shape) <= _KEPT_SUB_GRID:
            self._sub_ids = np.concatenate(
                [self._ids_at(coords, flat.shape) for flat, coords in grid_blocks(table, self._axes)]
            )
        n_chunks = [math.ceil(size / chunk_size) for size in self.bucket_sizes]
        self._first_chunk = np.concatenate([[0], np.cumsum(n_chunks)]).astype(np.int64)
        self.n_chunks = int(self._first_chunk[-1])

    def chunk_lengths(self) -> np.ndarray:
        """Runs in each chunk, by chunk index (every chunk is full but a bucket's last)."""
        lengths = np.full(self.n_chunks, self.chunk_size, dtype=np.int64)
        for b, size in enumerate(self.bucket_sizes):
            lengths[self._first_chunk[b + 1] - 1] = (
                size - (self._first_chunk[b + 1] - self._first_chunk[b] - 1) * self.chunk_size
            )
        return lengths

    def _keys_and_counts(self, flat: np.ndarray, coords: dict) -> tuple[list, list]:
        """The distinct bucket keys among the runs at ``coords`` (sub-grid positions) and how often each occurs."""
        names, columns, to_key = self._columns
        values = columns({key: self.table.values(key, coords) for key in names})
        if not values:
            return [()], [flat.size]
        rows = np.stack(
            [np.broadcast_to(np.asarray(c, dtype=np.float64), flat.shape) for c in values], axis=1
        )
        distinct, counts = np.unique(rows, axis=0, return_counts=True)
        return [to_key(row) for row in distinct], counts.tolist()

    def bucket_ids(self, runs: np.ndarray) -> np.ndarray:
        """The bucket index (into :attr:`buckets`) of each of the global runs ``runs``."""
        if len(self.buckets) == 1:
            return np.zeros(runs.shape, dtype=np.int64)
        index = np.unravel_index(runs, self.table.shape)
        coords = {axis: index[axis] for axis in self._axes}
        if self._sub_ids is not None:
            return self._sub_ids[np.ravel_multi_index([coords[a] for a in self._axes], self._sub_shape)]
        return self._ids_at(coords, runs.shape)

    def _ids_at(self, coords: dict, shape: tuple) -> np.ndarray:
        """Bucket indices of the runs at sub-grid positions ``coords``."""
        names, columns, to_key = self._columns
        values = columns({key: self.table.values(key, coords) for key in names})
        rows = np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), shape) for c in values], axis=1)
        distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
        ids = np.asarray([self._id[to_key(row)] for row in distinct], dtype=np.int64)
        return ids[inverse.reshape(-1)]

    def chunks(self, block: int | None = None) -> Iterator[Chunk]:
        """Every chunk once, in the order its last run comes (bucket by bucket for one bucket per block)."""
        size = self.chunk_size
        n_total = self.table.n_total
        if len(self.buckets) == 1:
            for i, start in enumerate(range(0, n_total, size)):
                yield Chunk(i, self.buckets[0], np.arange(start, min(start + size, n_total), dtype=np.int64))
            return
        block = block or max(size, 1 << 20)
        pending: list[list[np.ndarray]] = [[] for _ in self.buckets]
        n_pending = [0] * len(self.buckets)
        cut = [0] * len(self.buckets)  # chunks already cut from each bucket
        for start in range(0, n_total, block):
            runs = np.arange(start, min(start + block, n_total), dtype=np.int64)
            ids = self.bucket_ids(runs)
            order = np.argsort(ids, kind="stable")  # by bucket, each bucket's runs still in C order
            ids_sorted = ids[order]
            edges = np.flatnonzero(np.diff(ids_sorted)) + 1
            for segment in np.split(order, edges):
                b = int(ids[segment[0]])
                pending[b].append(runs[segment])
                n_pending[b] += segment.size
                while n_pending[b] >= size:
                    members = np.concatenate(pending[b])
                    yield Chunk(int(self._first_chunk[b]) + cut[b], self.buckets[b], members[:size])
                    cut[b] += 1
                    pending[b] = [members[size:]]
                    n_pending[b] -= size
        for b, parts in enumerate(pending):
            if n_pending[b]:
                yield Chunk(int(self._first_chunk[b]) + cut[b], self.buckets[b], np.concatenate(parts))


def plan_chunks(table: RunTable, engine: RegisteredEngine, chunk_size: int) -> list[Chunk]:
    """Every chunk of a (small) sweep, in index order."""
    return sorted(ChunkPlan(table, engine, chunk_size).chunks(), key=lambda chunk: chunk.index)
