"""Run a sweep: chunks of runs through ``vmap``, sharded over devices, written as they finish, resumable.

Runs are grouped into shape buckets (one compilation each); each bucket is cut into chunks of a fixed
size (the last one padded by repeating its last run), so every chunk of a bucket reuses one compiled
program and memory stays bounded by the chunk size. A chunk's run axis is sharded over a 1-D device mesh
(``NamedSharding``); inside each device, ``lax.map(..., batch_size=vmap_width)`` advances ``vmap_width``
runs together through a ``vmap`` of the engine. Results depend only on the spec, the engine and the
chunk size, so a resumed sweep equals an uninterrupted one bit for bit.
"""

import dataclasses
import functools
import hashlib
import json
import math
import pathlib
import shutil
import sys
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._errors import ConfigError
from .._precision import require_float64
from ..engine._loop import run_batched
from ..simulation._registry import RegisteredEngine, get_engine
from ._results import assemble, chunk_dataset, load, write_atomic, write_json_atomic
from ._spec import RunTable, SweepSpec, build_run_table

BATCH_AXIS = "batch"
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Chunk:
    index: int
    bucket: tuple
    runs: np.ndarray  # global run indices (not padded)


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The labelled results and what it took: ``config_steps`` = runs x steps actually computed here."""

    dataset: object  # xarray.Dataset (None on processes other than 0 of a multi-host sweep)
    n_runs: int
    n_chunks: int
    chunks_computed: int
    n_buckets: int
    compilations: int
    n_devices: int
    chunk_size: int
    wall_seconds: float
    config_steps: int

    def summary_line(self) -> str:
        rate = self.config_steps / self.wall_seconds if self.wall_seconds > 0 else float("nan")
        line = (
            f"{self.n_runs} runs in {self.n_buckets} shape bucket(s), {self.n_chunks} chunks of "
            f"{self.chunk_size} ({self.chunks_computed} computed now, {self.compilations} compilation(s), "
            f"{self.n_devices} device(s)); {self.wall_seconds:.1f} s, {rate:.3g} config-steps/s"
        )
        if self.dataset is None:  # a multi-host sweep's process other than 0
            return line
        diverged = int(np.asarray(self.dataset["diverged"]).sum())
        depth = np.asarray(self.dataset["inversion_depth"], dtype=np.float64)
        deepest = f"{np.nanmax(depth):.3f}" if np.isfinite(depth).any() else "n/a"
        return f"{line}; diverged: {diverged}; largest inversion depth: {deepest}"


def plan_chunks(table: RunTable, engine: RegisteredEngine, chunk_size: int) -> list[Chunk]:
    """Buckets in sorted order, each cut into chunks of ``chunk_size`` consecutive runs."""
    buckets: dict[tuple, list[int]] = {}
    for i, config in enumerate(table.configs):
        buckets.setdefault(engine.bucket_key(config), []).append(i)
    chunks = []
    for key in sorted(buckets):
        runs = np.asarray(buckets[key], dtype=np.int64)
        for start in range(0, runs.size, chunk_size):
            chunks.append(Chunk(len(chunks), key, runs[start : start + chunk_size]))
    return chunks


def sweep_mesh(n_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the devices (all of them, across hosts after ``jax.distributed.initialize``)."""
    devices = jax.devices()
    if n_devices is not None:
        if not 1 <= n_devices <= len(devices):
            raise ConfigError("devices", f"must be between 1 and {len(devices)}, got {n_devices}")
        devices = devices[:n_devices]
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


# Traces of the sweep runner so far: one per compiled shape (a sweep reports the increase).
_TRACES = [0]


@functools.cache
def _compiled_runner(engine: RegisteredEngine, steps: int, record_every: int, vmap_width, mesh: Mesh):
    def local(shared, per_run):
        _TRACES[0] += 1
        one = functools.partial(engine.run_one, shared, steps=steps, record_every=record_every)
        return run_batched(one, per_run, vmap_width)

    # check_vma=False: the trainer's scan starts from constants that are the same on every device.
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(BATCH_AXIS)), out_specs=P(BATCH_AXIS), check_vma=False
    )
    return jax.jit(sharded)


def _to_global(tree, sharding):
    """Host arrays -> (possibly multi-host) global arrays; every process holds the same host arrays."""
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree
    )


def _to_host(tree):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _pad(runs: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([runs, np.full(size - runs.size, runs[-1], dtype=runs.dtype)])


def fingerprint(spec: SweepSpec, engine: str, chunk_size: int, n_devices: int, vmap_width) -> str:
    """Everything that fixes a sweep's results bit for bit. The device count is in it because XLA's CPU
    kernels may split a product differently across threads, changing the last bit of a result."""
    from .._version import __version__

    text = f"{spec.to_json()}|{engine}|{chunk_size}|{n_devices}|{vmap_width}|{_FORMAT_VERSION}|{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_sweep(
    spec: SweepSpec,
    out: str | pathlib.Path | None = None,
    *,
    engine: str = "full",
    chunk_size: int | None = None,
    resume: bool = False,
    devices: int | None = None,
    vmap_width: int | None | str = "engine",
    progress: bool = False,
    keep_chunks: bool = False,
) -> SweepResult:
    """Run every configuration of ``spec``; return (and with ``out``, write) the labelled results.

    With ``out``, finished chunks go to ``<out>.chunks/`` as they finish and the final Dataset to ``out``
    (both atomically); ``resume=True`` reuses the finished chunks of an interrupted run of the same spec,
    engine and chunk size. ``devices`` limits the mesh to the first N devices; ``vmap_width`` overrides
    the engine's per-device vmap width (None: the whole shard). Raises :class:`ConfigError` on a bad spec
    before any work starts.
    """
    require_float64()
    started = time.perf_counter()
    eng = get_engine(engine)
    width = eng.vmap_width if vmap_width == "engine" else vmap_width
    if width is not None and (not isinstance(width, int) or width < 1):
        raise ConfigError("vmap_width", f"must be a positive integer or None, got {width!r}")
    table = build_run_table(spec, engine)  # validates every run before any work
    mesh = sweep_mesh(devices)
    n_dev = mesh.size

    paths = _Paths(out) if out is not None else None
    manifest = paths.read_manifest() if (paths is not None and resume) else None
    if chunk_size is None:
        chunk_size = manifest["chunk_size"] if manifest else eng.default_chunk_size
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigError("--chunk-size", f"must be a positive integer, got {chunk_size!r}")
    chunk_size = min(chunk_size, len(table.configs))
    chunk_size = math.ceil(chunk_size / n_dev) * n_dev  # every device gets an equal shard
    key = fingerprint(spec, engine, chunk_size, n_dev, width)
    attrs = {
        "cpi_theory_sweep_spec": spec.to_json(),
        "engine": engine,
        "chunk_size": chunk_size,
        "n_devices": n_dev,
        "vmap_width": "none" if width is None else width,
        "fingerprint": key,
        "base_config": json.dumps(spec.base.to_dict(), sort_keys=True),
    }

    chunks = plan_chunks(table, eng, chunk_size)
    done: dict[int, object] = {}
    if paths is not None:
        if paths.out.exists() and not resume:
            raise ConfigError("--out", f"{paths.out} exists; pass --resume to continue it or remove it")
        if paths.chunk_dir.exists() and not resume:
            raise ConfigError(
                "--out", f"{paths.chunk_dir} holds an interrupted sweep; pass --resume to continue it"
            )
        if resume and paths.out.exists() and not paths.chunk_dir.exists():
            dataset = load(paths.out)
            if dataset.attrs.get("fingerprint") != key:
                raise ConfigError(
                    "--resume", f"{paths.out} holds a different sweep (spec, engine or chunk size)"
                )
            return _result(dataset, table, chunks, 0, 0, n_dev, chunk_size, started, spec, 0)
        if manifest is not None and manifest["fingerprint"] != key:
            raise ConfigError(
                "--resume",
                f"{paths.chunk_dir} belongs to a different sweep (spec, engine, chunk size, device count "
                f"or vmap width differ: it used engine {manifest['engine']}, chunk size "
                f"{manifest['chunk_size']}, {manifest['n_devices']} device(s), vmap width "
                f"{manifest['vmap_width']})",
            )
        if jax.process_count() > 1:  # every host has checked the folder before process 0 writes to it
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cpi_theory sweep: output checked")
        if jax.process_index() == 0:
            paths.chunk_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                {
                    "n_devices": n_dev,
                    "vmap_width": width,
                    "fingerprint": key,
                    "chunk_size": chunk_size,
                    "engine": engine,
                    "n_chunks": len(chunks),
                    "spec": spec.to_mapping(),
                },
                paths.manifest,
            )
        for chunk in chunks:
            path = paths.chunk(chunk.index)
            if path.exists():
                try:
                    done[chunk.index] = load(path)
                except (OSError, ValueError):
                    path.unlink()  # unreadable: redo it (atomic writes make this unlikely)
        if jax.process_count() > 1:
            # Every process must skip the same chunks: process 0's view of the chunk folder decides.
            from jax.experimental import multihost_utils

            mask = np.asarray([c.index in done for c in chunks])
            mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
            done = {int(i): done.get(int(i)) for i in np.flatnonzero(mask)}

    todo = [c for c in chunks if c.index not in done]
    traces_before = _TRACES[0]
    runner = _compiled_runner(eng, spec.base.steps, spec.base.record_every, width, mesh)
    batch_sharding = NamedSharding(mesh, P(BATCH_AXIS))
    replicated = NamedSharding(mesh, P())
    bar = _progress_bar(progress, len(table.configs), sum(chunks[i].runs.size for i in done))
    if bar is not None:
        bar.set_postfix_str(f"chunks {len(done)}/{len(chunks)}")

    def launch(chunk: Chunk):
        padded = _pad(chunk.runs, chunk_size)
        shared, per_run = eng.inputs([table.configs[i] for i in padded])
        return runner(_to_global(shared, replicated), _to_global(per_run, batch_sharding))

    def finish(chunk: Chunk, outputs):
        records, first_bad = _to_host(outputs)
        n = chunk.runs.size
        records = jax.tree.map(lambda x: np.asarray(x)[:n], records)
        dataset = chunk_dataset(spec, chunk.runs, records, np.asarray(first_bad)[:n])
        if paths is not None and jax.process_index() == 0:
            write_atomic(dataset, paths.chunk(chunk.index))
        done[chunk.index] = dataset
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(f"chunks {len(done)}/{len(chunks)}")

    try:
        # One chunk in flight while the next one's inputs are built on the host (dispatch is async).
        pending = None
        for chunk in todo:
            outputs = launch(chunk)
            if pending is not None:
                finish(*pending)
            pending = (chunk, outputs)
        if pending is not None:
            finish(*pending)
    finally:
        if bar is not None:
            bar.close()

    dataset = None  # on processes other than 0 of a multi-host sweep: process 0 assembles and writes
    if jax.process_index() == 0:
        dataset = assemble(spec, table, [done[c.index] for c in chunks], attrs)
        if paths is not None:
            write_atomic(dataset, paths.out)
            if not keep_chunks:
                shutil.rmtree(paths.chunk_dir)
    computed = sum(c.runs.size for c in todo)
    compilations = _TRACES[0] - traces_before
    return _result(
        dataset, table, chunks, len(todo), compilations, n_dev, chunk_size, started, spec, computed
    )


def _result(dataset, table, chunks, computed_chunks, compilations, n_dev, chunk_size, started, spec, runs):
    return SweepResult(
        dataset=dataset,
        n_runs=len(table.configs),
        n_chunks=len(chunks),
        chunks_computed=computed_chunks,
        n_buckets=len({c.bucket for c in chunks}),
        compilations=compilations,
        n_devices=n_dev,
        chunk_size=chunk_size,
        wall_seconds=time.perf_counter() - started,
        config_steps=runs * spec.base.steps,
    )


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc="sweep", file=sys.stderr, dynamic_ncols=True)


class _Paths:
    def __init__(self, out):
        self.out = pathlib.Path(out)
        self.chunk_dir = self.out.with_name(self.out.name + ".chunks")
        self.manifest = self.chunk_dir / "manifest.json"

    def chunk(self, index: int) -> pathlib.Path:
        return self.chunk_dir / f"chunk_{index:06d}.nc"

    def read_manifest(self):
        if not self.manifest.exists():
            return None
        return json.loads(self.manifest.read_text())


def sweep(spec, out=None, **kwargs):
    """:func:`run_sweep` returning just the xarray Dataset. ``spec`` may be a mapping or a :class:`SweepSpec`."""
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_mapping(spec)
    return run_sweep(spec, out, **kwargs).dataset
