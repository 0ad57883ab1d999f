"""Run a sweep: the spec's columns go chunk by chunk to the devices, results stream to a store, resumable.

Runs are grouped into the engine's buckets (one compiled program each) and cut into chunks of a fixed size
(:class:`ChunkPlan`). A chunk's parameters are cut from the run table as float64 columns
(:meth:`RunTable.params`: no Python object per run), sent to the devices sharded over the run axis, and
computed by the engine's batched program (:class:`cpi_theory.simulation.ChunkRunner`, the same one
:func:`cpi_theory.simulation.simulate_many` uses); the next chunk is cut and sent while one computes.
Summaries and stored trajectories are made on the device. Results depend only on the spec, the engine,
the chunk size, the device count and the group size, so a resumed sweep equals an uninterrupted one bit
for bit.

Where results go: in memory (``out=None``), a netCDF file (``.nc``: finished chunks in ``<out>.chunks/``,
assembled at the end; for results that fit in memory), or a Zarr store (``.zarr``: every chunk written into
its region of one store as it finishes; memory bounded by a chunk; see :mod:`._zarr`).

:func:`run_sweep` is a sequence of named steps: :func:`_settings` (engine, devices, chunk size, the memory
and time estimates, the fingerprint), :func:`build_run_table` (the vectorized validation),
:class:`ChunkPlan`, the store's ``open`` (refusals, the finished chunks), :func:`_compute` (the pipelined
chunk loop) and the store's ``finish``.
"""

import dataclasses
import hashlib
import json
import math
import pathlib
import shutil
import sys
import time

import jax
import numpy as np

from .._errors import ConfigError
from .._interrupt import raise_if_interrupted
from .._precision import require_float64
from .._version import __version__
from ..simulation._batch import TRACES, ChunkRunner, device_mesh, pad_runs, summary_variables
from ..simulation._memory import (
    Need,
    device_memory_bytes,
    format_bytes,
    machine_memory_bytes,
    refuse_unless_fits,
    vocabulary_key,
)
from ..simulation._registry import FLOAT_BYTES, RegisteredEngine, device_platform, get_engine
from ._faults import fault_point
from ._plan import Chunk, ChunkPlan
from ._results import (
    CHUNK_DIM,
    ResultArrays,
    check_netcdf_limits,
    chunk_dataset,
    load,
    recording_of,
    remove_stale_temporaries,
    result_variables,
    write_atomic,
    write_json_atomic,
)
from ._spec import SweepSpec, build_run_table
from ._zarr import ZarrStore, is_zarr, open_results

_FORMAT_VERSION = 2
# A sweep whose estimate exceeds this prints it before it starts (its progress bar shows the rest).
ESTIMATE_AFTER_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The labelled results and what it took: ``config_steps`` = runs x steps actually computed here."""

    dataset: (
        object  # xarray.Dataset (lazy for a Zarr store; None on processes other than 0 of a multi-host sweep)
    )
    n_runs: int
    n_chunks: int
    chunks_computed: int
    n_buckets: int
    compilations: int
    n_devices: int
    chunk_size: int
    wall_seconds: float
    config_steps: int
    n_diverged: int = 0
    largest_depth: float = float("nan")

    def summary_line(self) -> str:
        rate = self.config_steps / self.wall_seconds if self.wall_seconds > 0 else float("nan")
        line = (
            f"{self.n_runs} runs in {self.n_buckets} shape bucket(s), {self.n_chunks} chunks of "
            f"{self.chunk_size} ({self.chunks_computed} computed now, {self.compilations} compilation(s), "
            f"{self.n_devices} device(s)); {self.wall_seconds:.1f} s, {rate:.3g} config-steps/s"
        )
        if self.dataset is None:  # a multi-host sweep's process other than 0
            return line
        deepest = f"{self.largest_depth:.3f}" if math.isfinite(self.largest_depth) else "n/a"
        return f"{line}; diverged: {self.n_diverged}; largest inversion depth: {deepest}"


def sweep_mesh(n_devices: int | None = None):
    """A 1-D mesh over the devices (all of them, across hosts after ``jax.distributed.initialize``)."""
    return device_mesh(n_devices)


def fingerprint(spec: SweepSpec, engine: str, chunk_size: int, n_devices: int, group) -> str:
    """Everything that fixes a sweep's results bit for bit. The device count is in it because XLA's CPU
    kernels may split a product differently across threads, changing the last bit of a result."""
    text = f"{spec.to_json()}|{engine}|{chunk_size}|{n_devices}|{group}|{_FORMAT_VERSION}|{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- memory -----------------------------------------------------------------------------------------------------
def _largest(spec: SweepSpec, key: str) -> int | float:
    """The largest value ``key`` takes in any run of ``spec`` (from base, grid values or random bounds)."""
    grid, random = dict(spec.grid), dict(spec.random)
    if key in grid:
        return max(grid[key])
    if key in random:
        return max(random[key][1])
    return getattr(spec.base, key)


def _chunk_bytes(spec: SweepSpec, engine: RegisteredEngine, chunk_size: int, n_devices: int, group) -> tuple:
    """(bytes, bytes on one device) of one chunk's runs: the state of the runs each device advances together,
    every run's inputs (host and device), and the outputs (device, host, the chunk's dataset)."""
    per_chunk = math.ceil(min(chunk_size, spec.n_total) / n_devices) * n_devices
    shard = per_chunk // n_devices
    together = n_devices * (shard if group is None else min(group, shard))
    n_subjects, n_answers = int(_largest(spec, "n_subjects")), int(_largest(spec, "n_answers"))
    state = together * engine.state_bytes(n_subjects, n_answers)
    inputs = per_chunk * engine.input_bytes(n_subjects, n_answers)
    outputs = per_chunk * engine.output_bytes(recording_of(spec))
    return (state + 2 * inputs, (state + inputs) // n_devices), (3 * outputs, outputs // n_devices)


def sweep_needs(
    spec: SweepSpec,
    engine: str | RegisteredEngine,
    chunk_size: int,
    n_devices: int,
    group,
    available: int | None = None,
    streamed: bool = False,
) -> list[Need]:
    engine = get_engine(engine) if isinstance(engine, str) else engine
    """What a sweep holds at its peak, from the spec alone (before any run is built): one chunk's runs, the
    random draws, and (unless ``streamed`` to a Zarr store) the results of every run and a copy while the
    file is written."""
    n_total = spec.n_total
    (runs, runs_device), (records, records_device) = _chunk_bytes(spec, engine, chunk_size, n_devices, group)
    available = machine_memory_bytes() if available is None else available
    n_subjects, n_answers = _largest(spec, "n_subjects"), _largest(spec, "n_answers")
    prefix = "" if {"n_subjects", "n_answers"} & set(spec.swept_keys) else "base."
    n_seeds = len(dict(spec.grid).get("seed", (spec.seed,)))
    variables = result_variables(spec).values()
    result_floats = sum(max(math.prod(shape), 1) for _, shape, _ in variables)
    trajectory_floats = sum(math.prod(shape) for _, shape, _ in variables if shape)
    draws = 3 * n_seeds * spec.n_runs * len(spec.random) * FLOAT_BYTES  # int64, float64 and coordinate copies
    results = 0 if streamed else 2 * n_total * result_floats * FLOAT_BYTES
    smaller = _fitting_chunk_size(spec, engine, chunk_size, n_devices, group, available - draws - results)
    smaller = f"a --chunk-size of at most {smaller}, " if smaller else ""
    return [
        Need(
            runs,
            # An engine whose per-run state grows with the vocabulary names it; otherwise the chunk is the lever.
            vocabulary_key(n_subjects, n_answers, prefix) if engine.memory_way_out else "--chunk-size",
            f"the {engine.name} engine holds {format_bytes(engine.state_bytes(int(n_subjects), int(n_answers)))} "
            f"per run in flight: use {smaller}fewer runs per chunk"
            + (f", {engine.memory_way_out}" if engine.memory_way_out else ""),
            per_device=runs_device,
        ),
        Need(
            records,
            "base.steps",
            f"each run keeps its summary and every trajectory_every-th of {spec.base.steps} steps: use a "
            f"larger trajectory_every or {smaller or 'a smaller --chunk-size, '}or fewer steps",
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
            f"the results keep {result_floats} numbers for each of {n_total} runs in memory: write them to a "
            "Zarr store (--out results.zarr streams each chunk to disk), "
            + (
                'use "trajectory_every": 0 (summaries only), fewer trajectory_metrics, or '
                if trajectory_floats
                else ""
            )
            + "split the sweep into smaller specs",
        ),
    ]


def _fitting_chunk_size(spec, engine, chunk_size, n_devices, group, available, device=None) -> int:
    """The largest chunk size (chunk_size halved, a multiple of the device count) whose runs fit in
    ``available`` bytes (and, given ``device``, in one device's memory); 0 if none smaller than ``chunk_size``
    does."""
    size = chunk_size // 2
    while size >= n_devices:
        size = size // n_devices * n_devices
        (runs, runs_device), (records, records_device) = _chunk_bytes(spec, engine, size, n_devices, group)
        if runs + records <= available and (device is None or runs_device + records_device <= device):
            return size
        size //= 2
    return 0


def _default_chunk_that_fits(spec, engine, chunk_size, n_devices, group, streamed) -> int:
    """``chunk_size`` halved (a multiple of the device count) until one chunk fits beside the rest of the
    sweep, in this machine's memory and one device's; ``chunk_size`` itself if it fits or nothing does (the
    refusal then names the key to change, not the chunk: a chunk that fits on its own is kept)."""
    available, device = machine_memory_bytes(), device_memory_bytes()
    needs = sweep_needs(spec, engine, chunk_size, n_devices, group, available, streamed)
    in_chunk = needs[0].bytes + needs[1].bytes  # the chunk's runs and records; the rest does not shrink
    rest = sum(need.bytes for need in needs) - in_chunk
    if in_chunk + rest <= available and (device is None or sum(need.per_device for need in needs) <= device):
        return chunk_size
    beside = _fitting_chunk_size(spec, engine, chunk_size, n_devices, group, available - rest, device)
    if beside or in_chunk <= available:
        return beside or chunk_size
    return _fitting_chunk_size(spec, engine, chunk_size, n_devices, group, available) or chunk_size


# -- the steps of a sweep -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Settings:
    """What fixes how a sweep runs: the chunk runner (engine, recording, mesh, chunk and group sizes), and
    the fingerprint and result attributes that follow from them."""

    runner: ChunkRunner
    fingerprint: str
    attrs: dict

    @property
    def engine(self) -> RegisteredEngine:
        return self.runner.engine

    @property
    def chunk_size(self) -> int:
        return self.runner.chunk_size

    @property
    def n_devices(self) -> int:
        return self.runner.n_devices


def _settings(spec, engine: str, chunk_size, devices, group, store, resume, cpu_kernel=True) -> _Settings:
    """Check the arguments and the memory estimate; nothing is built yet."""
    if chunk_size is None and resume and store is not None:
        chunk_size = store.recorded_chunk_size()
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ConfigError("--chunk-size", f"must be a positive integer, got {chunk_size!r}")

    def runner_of(size):
        return ChunkRunner.create(
            engine,
            recording_of(spec),
            chunk_size=size,
            group=group,
            devices=devices,
            n_runs=spec.n_total,
            on_trace=_trace_drill,
            cpu_kernel=cpu_kernel,
        )

    runner = runner_of(chunk_size)
    eng, n_dev, width = runner.engine, runner.n_devices, runner.group
    streamed = store is not None and store.streamed
    if chunk_size is None:
        # The engine's default chunk is a speed choice, not the user's: halve it until a chunk fits here.
        fitted = _default_chunk_that_fits(spec, eng, runner.chunk_size, n_dev, width, streamed)
        if fitted != runner.chunk_size:
            runner = runner_of(fitted)
    # Refuse what cannot fit (or cannot be written) before a single run is built.
    needs = sweep_needs(spec, eng, runner.chunk_size, n_dev, width, streamed=streamed)
    refuse_unless_fits(f"this sweep ({eng.name} engine)", needs)
    if store is not None and not streamed:
        check_netcdf_limits(spec, spec.n_total)
    _refuse_unless_in_time(spec, eng)
    key = fingerprint(spec, eng.name, runner.chunk_size, n_dev, width)
    attrs = {
        "cpi_theory_sweep_spec": spec.to_json(),
        "engine": eng.name,
        "chunk_size": runner.chunk_size,
        "n_devices": n_dev,
        "vmap_width": "none" if width is None else width,
        "fingerprint": key,
        "base_config": json.dumps(spec.base.to_dict(), sort_keys=True),
    }
    return _Settings(runner, key, attrs)


# A sweep estimated to take longer than this is refused before any work (split it, or use fewer steps).
MAX_SECONDS = 30 * 24 * 3600


def estimated_seconds(spec: SweepSpec, engine: RegisteredEngine) -> float:
    """Roughly how long the sweep takes here (the engine's typical rate on this platform)."""
    return engine.estimated_seconds(spec.n_total * max(spec.base.steps, 1), device_platform())


def _refuse_unless_in_time(spec: SweepSpec, engine: RegisteredEngine) -> None:
    seconds = estimated_seconds(spec, engine)
    if seconds > MAX_SECONDS:
        key = (
            "base.steps"
            if spec.base.steps >= spec.n_total
            else ("n_runs" if spec.random and not spec.grid else "grid")
        )
        raise ConfigError(
            key,
            f"{spec.n_total} runs x {spec.base.steps} steps would take about {format_duration(seconds)} here "
            f"(at ~{engine.typical_rate.get(device_platform(), 0):.3g} config-steps/s, the {engine.name} engine on "
            f"{device_platform()}), more than {format_duration(MAX_SECONDS)}: use fewer steps or runs, or split the sweep",
        )


def format_duration(seconds: float) -> str:
    """``1 h 05 min``, ``3 min 20 s``, ``12 s``, ``4.2 days``."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.3g} days"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _trace_drill() -> None:
    fault_point("trace")


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"cpi_theory sweep: {name}")


def _agree_on_done(done: set[int], n_chunks: int) -> set[int]:
    """Every process must skip the same chunks: process 0's view of the store decides."""
    if jax.process_count() == 1:
        return done
    from jax.experimental import multihost_utils

    mask = np.zeros(n_chunks, dtype=bool)
    mask[sorted(done)] = True
    return {int(i) for i in np.flatnonzero(multihost_utils.broadcast_one_to_all(mask))}


def _chunk_values(summary: dict, trajectory: dict) -> dict:
    return {**summary, **trajectory}


class _MemoryStore:
    """Results kept in memory only (``out=None``)."""

    streamed = False

    def __init__(self, spec):
        self.spec = spec
        self.results = None  # allocated by open, after the memory estimate has let the sweep run
        self.n_diverged, self.largest_depth = 0, float("nan")

    def recorded_chunk_size(self):
        return None

    def _allocate(self, table) -> None:
        if jax.process_index() == 0:
            self.results = ResultArrays(self.spec, table)

    def open(self, settings, plan, resume):
        self._allocate(plan.table)
        return None, set()

    def write(self, chunk: Chunk, summary: dict, trajectory: dict) -> None:
        if self.results is not None:
            self.results.put(chunk.runs, _chunk_values(summary, trajectory))

    def finish(self, settings, keep_chunks: bool):
        if self.results is None:
            return None
        dataset = self.results.to_dataset(settings.attrs)
        self.n_diverged = int(np.asarray(dataset["diverged"]).sum())
        depth = np.asarray(dataset["inversion_depth"], dtype=np.float64)
        self.largest_depth = float(np.nanmax(depth)) if np.isfinite(depth).any() else float("nan")
        return dataset


class _NetcdfStore(_MemoryStore):
    """A netCDF file: finished chunks as files in ``<out>.chunks/`` (atomic), then one assembled file."""

    def __init__(self, out, spec):
        super().__init__(spec)
        self.out = pathlib.Path(out)
        self.chunk_dir = self.out.with_name(self.out.name + ".chunks")
        self.manifest = self.chunk_dir / "manifest.json"

    def recorded_chunk_size(self):
        if not self.manifest.exists():
            return None
        return json.loads(self.manifest.read_text())["chunk_size"]

    def chunk(self, index: int) -> pathlib.Path:
        return self.chunk_dir / f"chunk_{index:06d}.nc"

    def open(self, settings: _Settings, plan: ChunkPlan, resume: bool):
        """Refuse to overwrite; on resume check the fingerprint. Returns the finished Dataset of a sweep
        that already completed, or the indices of its finished chunks (whose runs are scattered in)."""
        if self.out.exists() and not resume:
            raise ConfigError("--out", f"{self.out} exists; pass --resume to continue it or remove it")
        if self.chunk_dir.exists() and not resume:
            raise ConfigError(
                "--out", f"{self.chunk_dir} holds an interrupted sweep; pass --resume to continue it"
            )
        if resume and self.out.exists() and not self.chunk_dir.exists():
            dataset = load(self.out)
            if dataset.attrs.get("fingerprint") != settings.fingerprint:
                raise ConfigError(
                    "--resume",
                    f"{self.out} holds a different sweep (spec, engine, chunk size, or the CPU kernel against "
                    "XLA's program)",
                )
            return dataset, set()
        manifest = json.loads(self.manifest.read_text()) if (resume and self.manifest.exists()) else None
        if manifest is not None and manifest["fingerprint"] != settings.fingerprint:
            raise ConfigError(
                "--resume",
                f"{self.chunk_dir} belongs to a different sweep (spec, engine, chunk size, device count, "
                f"vmap width or the CPU kernel differ: it used engine {manifest['engine']}, chunk size "
                f"{manifest['chunk_size']}, {manifest['n_devices']} device(s), vmap width "
                f"{manifest['vmap_width']})",
            )
        _sync("output checked")  # every host has checked the folder before process 0 writes to it
        done: set[int] = set()
        self._allocate(plan.table)
        if jax.process_index() == 0:
            self.chunk_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out.parent, self.out.name)
            remove_stale_temporaries(self.chunk_dir)
            write_json_atomic(
                {
                    "n_devices": settings.n_devices,
                    "vmap_width": settings.runner.group,
                    "fingerprint": settings.fingerprint,
                    "chunk_size": settings.chunk_size,
                    "engine": settings.engine.name,
                    "n_chunks": plan.n_chunks,
                    "spec": self.spec.to_mapping(),
                },
                self.manifest,
            )
            done = self._reload(plan)
        return None, _agree_on_done(done, plan.n_chunks)

    def _reload(self, plan: ChunkPlan) -> set[int]:
        """Scatter the finished chunk files into the results; a file that cannot be read, or does not hold
        its chunk's runs, is removed and its chunk redone (atomic writes make this unlikely)."""
        lengths = plan.chunk_lengths()
        done = set()
        for path in self.chunk_dir.glob("chunk_*.nc"):
            number = path.stem.removeprefix("chunk_")
            if not number.isdigit() or int(number) >= plan.n_chunks:
                continue
            index = int(number)
            try:
                chunk = load(path)
                if chunk.sizes.get(CHUNK_DIM) != lengths[index]:
                    raise ValueError(f"{path} holds {chunk.sizes.get(CHUNK_DIM)} runs, not {lengths[index]}")
                self.results.add(chunk)
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            done.add(index)
        return done

    def write(self, chunk: Chunk, summary: dict, trajectory: dict) -> None:
        if jax.process_index() != 0:
            return
        write_atomic(chunk_dataset(self.spec, chunk.runs, summary, trajectory), self.chunk(chunk.index))
        super().write(chunk, summary, trajectory)

    def finish(self, settings, keep_chunks: bool):
        dataset = super().finish(settings, keep_chunks)
        if dataset is not None:
            write_atomic(dataset, self.out, drill="final")
            if not keep_chunks:
                shutil.rmtree(self.chunk_dir)
        return dataset


class _StreamedStore:
    """A Zarr store, written chunk by chunk (:mod:`._zarr`)."""

    streamed = True

    def __init__(self, out, spec):
        self.out = pathlib.Path(out)
        self.spec = spec
        self.zarr: ZarrStore | None = None
        self.n_diverged, self.largest_depth = 0, float("nan")

    def recorded_chunk_size(self):
        if not (self.out / "zarr.json").exists():
            return None
        attrs = json.loads((self.out / "zarr.json").read_text()).get("attributes", {})
        return attrs.get("chunk_size")

    def open(self, settings: _Settings, plan: ChunkPlan, resume: bool):
        done: set[int] = set()
        if jax.process_index() == 0:
            self.zarr = ZarrStore(self.out, self.spec, plan.table, plan.n_chunks, settings.chunk_size)
            done = self.zarr.open(settings.attrs, resume)
        _sync("store opened")
        done = _agree_on_done(done, plan.n_chunks)
        if jax.process_index() == 0 and len(done) == plan.n_chunks:
            self.zarr.finish()
            self.n_diverged, self.largest_depth = self.zarr.stats()
            return open_results(self.out), done
        return None, done

    def write(self, chunk: Chunk, summary: dict, trajectory: dict) -> None:
        if self.zarr is not None:
            self.zarr.write(chunk.index, chunk.runs, _chunk_values(summary, trajectory))

    def finish(self, settings, keep_chunks: bool):
        if self.zarr is None:
            return None
        self.zarr.finish()
        self.n_diverged, self.largest_depth = self.zarr.stats()
        return open_results(self.out)


def _store(out, spec):
    if out is None:
        return _MemoryStore(spec)
    if is_zarr(out):
        return _StreamedStore(out, spec)
    return _NetcdfStore(out, spec)


def _compute(spec, table, plan: ChunkPlan, settings: _Settings, done: set[int], store, bar) -> tuple:
    """Run every unfinished chunk, one in flight while the next one's columns are cut and sent; each
    finished chunk is written to the store."""
    runner = settings.runner
    counts = {"chunks": 0, "runs": 0}

    def chunks():
        for chunk in plan.chunks():
            if chunk.index in done:
                continue
            fault_point("chunk")
            raise_if_interrupted()
            padded = pad_runs(chunk.runs, runner.chunk_size)
            yield chunk, chunk.bucket, (lambda padded=padded: table.params(padded)), chunk.runs.size

    for chunk, output in runner.pipeline(chunks()):
        store.write(chunk, summary_variables(output, spec.base.steps), output.trajectory)
        counts["chunks"] += 1
        counts["runs"] += chunk.runs.size
        if bar is not None:
            bar.update(chunk.runs.size)
            bar.set_postfix_str(f"chunks {len(done) + counts['chunks']}/{plan.n_chunks}")
    return counts["chunks"], counts["runs"]


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
    cpu_kernel: bool = True,
) -> SweepResult:
    """Run every configuration of ``spec``; return (and with ``out``, write) the labelled results.

    ``out``: a ``.zarr`` store (each chunk written into it as it finishes; memory bounded by a chunk), or a
    netCDF file (finished chunks go to ``<out>.chunks/``, the final Dataset to ``out``, both atomically).
    ``resume=True`` reuses the finished chunks of an interrupted run of the same spec, engine and chunk size.
    ``devices`` limits the mesh to the first N devices; ``vmap_width`` overrides how many runs a device
    advances together (None: its whole shard; default: the engine's for this platform). ``cpu_kernel``: on
    a CPU in one process, buckets the engine has a CPU kernel for run there (the reduced engine's summaries
    and stored M_C); False: XLA's program only (as a multi-host sweep always runs). Raises
    :class:`ConfigError` on a bad spec, or one that cannot fit in memory or in a netCDF3 file, before any work.
    """
    require_float64()
    started = time.perf_counter()
    store = _store(out, spec)
    settings = _settings(
        spec, engine, chunk_size, devices, vmap_width, store if out is not None else None, resume, cpu_kernel
    )
    table = build_run_table(spec, settings.engine.name)  # validates every run before any work
    plan = ChunkPlan(table, settings.engine, settings.chunk_size)
    traces_before = TRACES[0]
    settings = _with_kernels(settings, plan)
    settings.attrs.update(_path_attrs(spec, settings.runner, plan))

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
            n_diverged=store.n_diverged,
            largest_depth=store.largest_depth,
        )

    finished, done = store.open(settings, plan, resume)
    if finished is not None:
        if not isinstance(store, _StreamedStore):
            store.n_diverged = int(np.asarray(finished["diverged"]).sum())
            depth = np.asarray(finished["inversion_depth"], dtype=np.float64)
            store.largest_depth = float(np.nanmax(depth)) if np.isfinite(depth).any() else float("nan")
        return result(finished, 0, 0, 0)
    lengths = plan.chunk_lengths()
    remaining = estimated_seconds(spec, settings.engine) * (1 - len(done) / max(plan.n_chunks, 1))
    if progress and remaining > ESTIMATE_AFTER_SECONDS:
        print(
            f"sweep: {table.n_total} runs x {spec.base.steps} steps, about {format_duration(remaining)} to go "
            f"(estimated at the {settings.engine.name} engine's typical rate on {device_platform()})",
            file=sys.stderr,
        )
    bar = _progress_bar(progress, table.n_total, int(sum(lengths[i] for i in done)))
    if bar is not None:
        bar.set_postfix_str(f"chunks {len(done)}/{plan.n_chunks}")
    try:
        chunks_computed, runs_computed = _compute(spec, table, plan, settings, done, store, bar)
    finally:
        if bar is not None:
            bar.close()
    dataset = store.finish(settings, keep_chunks)
    return result(dataset, chunks_computed, TRACES[0] - traces_before, runs_computed)


def _with_kernels(settings: _Settings, plan: ChunkPlan) -> _Settings:
    """The settings with the buckets that the CPU kernel computes named in the fingerprint: its results differ
    from the XLA program's in the last bits, so chunks of one path are never resumed by the other."""
    on_kernel = [bucket for bucket in plan.buckets if settings.runner.kernel(bucket) is not None]
    if not on_kernel:
        return settings
    engine = settings.engine
    key = f"{settings.fingerprint}|cpu-kernel:{','.join(engine.describe(b) for b in on_kernel)}"
    return dataclasses.replace(settings, fingerprint=key, attrs={**settings.attrs, "fingerprint": key})


def _path_attrs(spec: SweepSpec, runner: ChunkRunner, plan: ChunkPlan) -> dict:
    """How the runs were computed, for the results' attributes: the engine and the bucket each compiled
    program served (and which ran on the engine's CPU kernel), and whether only online summaries were
    kept."""
    engine = runner.engine
    buckets = ", ".join(runner.describe(bucket) for bucket in plan.buckets)
    if engine.online_summary:
        kept = (
            "; online summaries, O(state) memory per run"
            if spec.stored_every == 0
            else "; stored trajectories"
        )
    else:
        kept = "; recorded trajectories"
    return {"computed_by": f"{engine.label} ({buckets}){kept}"}


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc="sweep", file=sys.stderr, dynamic_ncols=True)


def sweep(spec, out=None, **kwargs):
    """:func:`run_sweep` returning just the xarray Dataset. ``spec`` may be a mapping or a :class:`SweepSpec`."""
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_mapping(spec)
    return run_sweep(spec, out, **kwargs).dataset
