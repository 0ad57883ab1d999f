"""Run a sweep: chunks of runs through ``vmap``, sharded over devices, written as they finish, resumable.

Runs are grouped into shape buckets (one compilation each); each bucket is cut into chunks of a fixed
size (the last one padded by repeating its last run), so every chunk of a bucket reuses one compiled
program and memory stays bounded by the chunk size. A chunk's run axis is sharded over a 1-D device mesh
(``NamedSharding``); inside each device, ``lax.map(..., batch_size=vmap_width)`` advances ``vmap_width``
runs together through a ``vmap`` of the engine. Results depend only on the spec, the engine and the
chunk size, so a resumed sweep equals an uninterrupted one bit for bit.

:func:`run_sweep` is a sequence of named steps: :func:`_settings` (engine, mesh, chunk size, the memory
estimate, the fingerprint), :func:`build_run_table` (the vectorized validation), :class:`ChunkPlan`,
:func:`_open_output` (refusals, the manifest, the finished chunks), :func:`_compute` (the pipelined chunk
loop) and :func:`_write_results`.
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
from .._interrupt import raise_if_interrupted
from .._precision import require_float64
from .._version import __version__
from ..engine._loop import run_batched
from ..simulation._memory import (
    FLOAT_BYTES,
    Need,
    machine_memory_bytes,
    records_bytes,
    refuse_unless_fits,
    run_input_bytes,
    run_state_bytes,
    vocabulary_key,
)
from ..simulation._registry import RegisteredEngine, get_engine
from ..simulation._simulate import wait_for
from ._faults import fault_point
from ._plan import Chunk, ChunkPlan
from ._results import (
    CHUNK_DIM,
    ResultArrays,
    check_netcdf_limits,
    chunk_dataset,
    load,
    remove_stale_temporaries,
    result_variables,
    write_atomic,
    write_json_atomic,
)
from ._spec import SweepSpec, build_run_table

BATCH_AXIS = "batch"
_FORMAT_VERSION = 1


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
def _compiled_runner(
    engine: RegisteredEngine,
    steps: int,
    record_every: int,
    vmap_width,
    mesh: Mesh,
    bucket: tuple,
    summaries: bool,
):
    def local(shared, per_run):
        _TRACES[0] += 1
        fault_point("trace")
        one = functools.partial(
            engine.run_one,
            shared,
            steps=steps,
            record_every=record_every,
            bucket=bucket,
            summaries_only=summaries,
        )
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
    wait_for(tree)  # in Python, not inside XLA, so that Ctrl-C interrupts a long chunk at once
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _pad(runs: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([runs, np.full(size - runs.size, runs[-1], dtype=runs.dtype)])


def fingerprint(spec: SweepSpec, engine: str, chunk_size: int, n_devices: int, vmap_width) -> str:
    """Everything that fixes a sweep's results bit for bit. The device count is in it because XLA's CPU
    kernels may split a product differently across threads, changing the last bit of a result."""
    text = f"{spec.to_json()}|{engine}|{chunk_size}|{n_devices}|{vmap_width}|{_FORMAT_VERSION}|{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- memory ---------------------------------------------------------------------------------------------------
def _largest(spec: SweepSpec, key: str) -> int | float:
    """The largest value ``key`` takes in any run of ``spec`` (from base, grid values or random bounds)."""
    grid, random = dict(spec.grid), dict(spec.random)
    if key in grid:
        return max(grid[key])
    if key in random:
        return max(random[key][1])
    return getattr(spec.base, key)


def _chunk_bytes(spec: SweepSpec, engine: str, chunk_size: int, n_devices: int, vmap_width) -> tuple:
    """(bytes, bytes on one device) of one chunk's runs: the state of the runs each device advances together,
    every run's inputs (host and device) and records (device, host, the chunk's dataset)."""
    per_chunk = math.ceil(min(chunk_size, spec.n_total) / n_devices) * n_devices
    shard = per_chunk // n_devices
    together = n_devices * (shard if vmap_width is None else min(vmap_width, shard))
    n_subjects, n_answers = _largest(spec, "n_subjects"), _largest(spec, "n_answers")
    state = together * run_state_bytes(n_subjects, n_answers, engine)
    inputs = per_chunk * run_input_bytes(n_subjects, n_answers, engine)
    if engine == "reduced" and spec.stored_every == 0:
        records = per_chunk * 8 * FLOAT_BYTES  # the online summary: a few numbers per run
    else:
        records = per_chunk * records_bytes(spec.base.steps, spec.base.record_every)
    return (state + 2 * inputs, (state + inputs) // n_devices), (3 * records, records // n_devices)


def sweep_needs(
    spec: SweepSpec, engine: str, chunk_size: int, n_devices: int, vmap_width, available: int | None = None
) -> list[Need]:
    """What a sweep holds at its peak, from the spec alone (before any run is built): one chunk's runs, the
    random draws, and the results of every run (and a copy while the file is written)."""
    n_total = spec.n_total
    (runs, runs_device), (records, records_device) = _chunk_bytes(
        spec, engine, chunk_size, n_devices, vmap_width
    )
    available = machine_memory_bytes() if available is None else available
    n_subjects, n_answers = _largest(spec, "n_subjects"), _largest(spec, "n_answers")
    prefix = "" if {"n_subjects", "n_answers"} & set(spec.swept_keys) else "base."
    n_seeds = len(dict(spec.grid).get("seed", (spec.seed,)))
    variables = result_variables(spec).values()
    result_floats = sum(max(math.prod(shape), 1) for _, shape, _ in variables)
    trajectory_floats = sum(math.prod(shape) for _, shape, _ in variables if shape)
    draws = 3 * n_seeds * spec.n_runs * len(spec.random) * FLOAT_BYTES  # int64, float64 and coordinate copies
    results = 2 * n_total * result_floats * FLOAT_BYTES
    fixed = draws + results
    smaller = _fitting_chunk_size(spec, engine, chunk_size, n_devices, vmap_width, available - fixed)
    smaller = f"a --chunk-size of at most {smaller}, " if smaller else ""
    return [
        Need(
            runs,
            vocabulary_key(n_subjects, n_answers, prefix),
            f"the {engine} engine holds "
            + (
                "d x d matrices per run (d = n_subjects + n_answers + 3): use "
                if engine == "full"
                else "its state per run: use "
            )
            + smaller
            + (
                "a smaller vocabulary or --engine reduced (exact class dynamics, no d x d matrices)"
                if engine == "full"
                else "fewer runs per chunk"
            ),
            per_device=runs_device,
        ),
        Need(
            records,
            "base.steps",
            f"each run records every record_every-th of {spec.base.steps} steps: use a larger "
            f"base.record_every (now {spec.base.record_every}) or {smaller or 'a smaller --chunk-size, '}"
            "or fewer steps",
            per_device=records_device,
        ),
        Need(
            draws,
            "n_runs",
            f"{n_seeds} x {spec.n_runs} draws of {len(spec.random)} random key(s) are kept: use a smaller n_runs",
        ),
        Need(
            results,
            "trajectory_every"
            if trajectory_floats
            else ("n_runs" if spec.random and not spec.grid else "grid"),
            f"the results keep {result_floats} numbers for each of {n_total} runs: "
            + (
                'use "trajectory_every": 0 (summaries only), fewer trajectory_metrics, or '
                if trajectory_floats
                else ""
            )
            + "split the sweep into smaller specs",
        ),
    ]


def _fitting_chunk_size(spec, engine, chunk_size, n_devices, vmap_width, available) -> int:
    """The largest chunk size (chunk_size halved, a multiple of the device count) whose runs fit in
    ``available`` bytes; 0 if none smaller than ``chunk_size`` does."""
    size = chunk_size // 2
    while size >= n_devices:
        size = size // n_devices * n_devices
        (runs, _), (records, _) = _chunk_bytes(spec, engine, size, n_devices, vmap_width)
        if runs + records <= available:
            return size
        size //= 2
    return 0


# -- the steps of a sweep -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Settings:
    """What fixes how a sweep runs: the engine, the device mesh, the chunk size and vmap width, and the
    fingerprint and file attributes that follow from them."""

    engine: RegisteredEngine
    width: int | None
    mesh: Mesh
    chunk_size: int
    fingerprint: str
    attrs: dict

    @property
    def n_devices(self) -> int:
        return self.mesh.size


def _settings(spec, engine: str, chunk_size, devices, vmap_width, paths, resume) -> _Settings:
    """Check the arguments and the memory estimate; nothing is built yet."""
    eng = get_engine(engine)
    width = eng.vmap_width if vmap_width == "engine" else vmap_width
    if width is not None and (not isinstance(width, int) or width < 1):
        raise ConfigError("vmap_width", f"must be a positive integer or None, got {width!r}")
    mesh = sweep_mesh(devices)
    n_dev = mesh.size
    manifest = paths.read_manifest() if (paths is not None and resume) else None
    if chunk_size is None:
        chunk_size = manifest["chunk_size"] if manifest else eng.default_chunk_size
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigError("--chunk-size", f"must be a positive integer, got {chunk_size!r}")
    # Refuse what cannot fit (or cannot be written) before a single run is built.
    refuse_unless_fits(f"this sweep ({engine} engine)", sweep_needs(spec, engine, chunk_size, n_dev, width))
    if paths is not None:
        check_netcdf_limits(spec, spec.n_total)
    chunk_size = min(chunk_size, spec.n_total)
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
    return _Settings(eng, width, mesh, chunk_size, key, attrs)


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"cpi_theory sweep: {name}")


def _open_output(paths, settings: _Settings, plan: ChunkPlan, spec: SweepSpec, resume: bool, results):
    """Refuse to overwrite; on resume check the fingerprint. Returns the finished Dataset of a sweep that
    already completed, or the indices of its finished chunks (the same on every process), whose runs
    process 0 has scattered into ``results``."""
    if paths.out.exists() and not resume:
        raise ConfigError("--out", f"{paths.out} exists; pass --resume to continue it or remove it")
    if paths.chunk_dir.exists() and not resume:
        raise ConfigError(
            "--out", f"{paths.chunk_dir} holds an interrupted sweep; pass --resume to continue it"
        )
    if resume and paths.out.exists() and not paths.chunk_dir.exists():
        dataset = load(paths.out)
        if dataset.attrs.get("fingerprint") != settings.fingerprint:
            raise ConfigError("--resume", f"{paths.out} holds a different sweep (spec, engine or chunk size)")
        return dataset, set()
    manifest = paths.read_manifest() if resume else None
    if manifest is not None and manifest["fingerprint"] != settings.fingerprint:
        raise ConfigError(
            "--resume",
            f"{paths.chunk_dir} belongs to a different sweep (spec, engine, chunk size, device count "
            f"or vmap width differ: it used engine {manifest['engine']}, chunk size "
            f"{manifest['chunk_size']}, {manifest['n_devices']} device(s), vmap width "
            f"{manifest['vmap_width']})",
        )
    _sync("output checked")  # every host has checked the folder before process 0 writes to it
    done: set[int] = set()
    if jax.process_index() == 0:
        paths.chunk_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(paths.out.parent, paths.out.name)
        remove_stale_temporaries(paths.chunk_dir)
        write_json_atomic(
            {
                "n_devices": settings.n_devices,
                "vmap_width": settings.width,
                "fingerprint": settings.fingerprint,
                "chunk_size": settings.chunk_size,
                "engine": settings.engine.name,
                "n_chunks": plan.n_chunks,
                "spec": spec.to_mapping(),
            },
            paths.manifest,
        )
        done = _reload(paths, paths.finished_chunks(plan.n_chunks), plan, results)
    if jax.process_count() > 1:
        # Every process must skip the same chunks: process 0's view of the chunk folder decides.
        from jax.experimental import multihost_utils

        mask = np.zeros(plan.n_chunks, dtype=bool)
        mask[sorted(done)] = True
        done = {int(i) for i in np.flatnonzero(multihost_utils.broadcast_one_to_all(mask))}
    return None, done


def _reload(paths, found: set[int], plan: ChunkPlan, results: ResultArrays) -> set[int]:
    """Scatter the finished chunk files into ``results``; a file that cannot be read, or does not hold its
    chunk's runs, is removed and its chunk redone (atomic writes make this unlikely)."""
    lengths = plan.chunk_lengths()
    done = set()
    for index in sorted(found):
        path = paths.chunk(index)
        try:
            chunk = load(path)
            if chunk.sizes.get(CHUNK_DIM) != lengths[index]:
                raise ValueError(f"{path} holds {chunk.sizes.get(CHUNK_DIM)} runs, not {lengths[index]}")
            results.add(chunk)
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        done.add(index)
    return done


def _compute(spec, table, plan: ChunkPlan, settings: _Settings, done: set[int], results, paths, bar) -> tuple:
    """Run every unfinished chunk, one in flight while the next one's inputs are built on the host
    (dispatch is async); each finished chunk is written (process 0) and scattered into ``results``."""
    eng, mesh, chunk_size = settings.engine, settings.mesh, settings.chunk_size
    summaries = spec.stored_every == 0 and eng.summaries
    batch_sharding = NamedSharding(mesh, P(BATCH_AXIS))
    replicated = NamedSharding(mesh, P())
    counts = {"chunks": 0, "runs": 0}

    def launch(chunk: Chunk):
        padded = _pad(chunk.runs, chunk_size)
        shared, per_run = eng.inputs([table.config(int(i)) for i in padded])
        runner = _compiled_runner(
            eng, spec.base.steps, spec.base.record_every, settings.width, mesh, chunk.bucket, summaries
        )
        return runner(_to_global(shared, replicated), _to_global(per_run, batch_sharding))

    def finish(chunk: Chunk, outputs):
        records, first_bad = _to_host(outputs)
        n = chunk.runs.size
        records = jax.tree.map(lambda x: np.asarray(x)[:n], records)
        dataset = chunk_dataset(spec, chunk.runs, records, np.asarray(first_bad)[:n])
        if jax.process_index() == 0:
            if paths is not None:
                write_atomic(dataset, paths.chunk(chunk.index))
            results.add(dataset)
        counts["chunks"] += 1
        counts["runs"] += n
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(f"chunks {len(done) + counts['chunks']}/{plan.n_chunks}")

    pending = None
    for chunk in plan.chunks():
        if chunk.index in done:
            continue
        fault_point("chunk")
        raise_if_interrupted()
        outputs = launch(chunk)
        if pending is not None:
            finish(*pending)
        pending = (chunk, outputs)
    if pending is not None:
        finish(*pending)
    return counts["chunks"], counts["runs"]


def _write_results(results, settings: _Settings, paths, keep_chunks: bool):
    """Process 0 assembles the labelled results and writes them atomically; then the chunks go."""
    if jax.process_index() != 0:
        return None  # on processes other than 0 of a multi-host sweep
    dataset = results.to_dataset(settings.attrs)
    if paths is not None:
        write_atomic(dataset, paths.out, drill="final")
        if not keep_chunks:
            shutil.rmtree(paths.chunk_dir)
    return dataset


def run_sweep(
    spec: SweepSpec,
    out: str | pathlib.Path | None = None,
    *,
    engine: str = "reduced",
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
    the engine's per-device vmap width (None: the whole shard). Raises :class:`ConfigError` on a bad spec,
    or one that cannot fit in memory or in a netCDF3 file, before any work starts.
    """
    require_float64()
    started = time.perf_counter()
    paths = _Paths(out) if out is not None else None
    settings = _settings(spec, engine, chunk_size, devices, vmap_width, paths, resume)
    table = build_run_table(spec, engine)  # validates every run before any work
    plan = ChunkPlan(table, settings.engine, settings.chunk_size)
    settings.attrs.update(_path_attrs(spec, settings.engine, plan))

    def result(dataset, chunks_computed, compilations, runs_computed):
        return SweepResult(
            dataset=dataset,
            n_runs=table.n_total,
            n_chunks=plan.n_chunks,
            chunks_computed=chunks_computed,
            n_buckets=len(plan.buckets),
            compilations=compilations,
            n_devices=settings.n_devices,
            chunk_size=settings.chunk_size,
            wall_seconds=time.perf_counter() - started,
            config_steps=runs_computed * spec.base.steps,
        )

    results = ResultArrays(spec, table) if jax.process_index() == 0 else None
    done: set[int] = set()
    if paths is not None:
        finished, done = _open_output(paths, settings, plan, spec, resume, results)
        if finished is not None:
            return result(finished, 0, 0, 0)
    traces_before = _TRACES[0]
    lengths = plan.chunk_lengths()
    bar = _progress_bar(progress, table.n_total, int(sum(lengths[i] for i in done)))
    if bar is not None:
        bar.set_postfix_str(f"chunks {len(done)}/{plan.n_chunks}")
    try:
        chunks_computed, runs_computed = _compute(spec, table, plan, settings, done, results, paths, bar)
    finally:
        if bar is not None:
            bar.close()
    dataset = _write_results(results, settings, paths, keep_chunks)
    return result(dataset, chunks_computed, _TRACES[0] - traces_before, runs_computed)


def _path_attrs(spec: SweepSpec, engine: RegisteredEngine, plan: ChunkPlan) -> dict:
    """How the runs were computed, for the results' attributes: the reduced engine's regimes (the generated
    update each bucket used) and whether only online summaries were kept."""
    if engine.name != "reduced":
        return {"computed_by": f"{engine.name} engine"}
    from ..reduced._minimal import Regime

    regimes = ", ".join(Regime(*bucket).name for bucket in plan.buckets)
    summaries = spec.stored_every == 0 and engine.summaries
    return {
        "computed_by": f"reduced engine, minimal state per regime ({regimes})"
        + ("; online summaries, O(state) memory per run" if summaries else "; recorded trajectories"),
    }


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

    def finished_chunks(self, n_chunks: int) -> set[int]:
        """Indices of the chunk files present (each is complete: they are written atomically)."""
        found = set()
        for path in self.chunk_dir.glob("chunk_*.nc"):
            number = path.stem.removeprefix("chunk_")
            if number.isdigit() and int(number) < n_chunks:
                found.add(int(number))
        return found

    def read_manifest(self):
        if not self.manifest.exists():
            return None
        return json.loads(self.manifest.read_text())


def sweep(spec, out=None, **kwargs):
    """:func:`run_sweep` returning just the xarray Dataset. ``spec`` may be a mapping or a :class:`SweepSpec`."""
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_mapping(spec)
    return run_sweep(spec, out, **kwargs).dataset
