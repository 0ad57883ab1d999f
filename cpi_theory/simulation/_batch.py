"""The one door for many runs: :func:`simulate_many`, and the chunk runner that it and sweeps share.

Runs travel as columns (:class:`ToyParams` with a leading run axis) from the host to the devices: no Python
object per run. Runs are grouped by their engine's bucket (one compiled program each), cut into chunks of
``chunk_size`` runs (the last one padded by repeating its last run, so every chunk of a bucket reuses one
program), and each chunk's run axis is sharded over a 1-D device mesh; inside a device,
``lax.map(..., batch_size=group)`` advances ``group`` runs together through a ``vmap`` of the engine's
:meth:`RegisteredEngine.batch_run`. Summaries and stored trajectories are computed on the device, so a
chunk hands back only what is kept. While one chunk computes, the next one's columns are cut and sent
(JAX dispatches asynchronously). On a CPU, a bucket for which the engine registers a CPU kernel
(:attr:`RegisteredEngine.cpu_kernel`: the reduced engine's summaries) runs there instead, one thread per
core, on the host columns.
"""

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._errors import ConfigError
from .._precision import require_float64
from ..config._params import ToyParams
from ..engine._divergence import raise_if_diverged
from ..engine._loop import run_batched
from ._registry import Recording, RegisteredEngine, RunOutput, device_platform, get_engine, usable_cores
from ._simulate import wait_for

BATCH_AXIS = "batch"
#: The per-run summary variables of a batch (and of a sweep's results).
SUMMARY_VARIABLES = ("start", "peak", "peak_step", "final", "inversion_depth", "diverged", "diverged_step")


def device_mesh(n_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the devices (all of them, across hosts after ``jax.distributed.initialize``)."""
    devices = jax.devices()
    if n_devices is not None:
        if not 1 <= n_devices <= len(devices):
            raise ConfigError("devices", f"must be between 1 and {len(devices)}, got {n_devices}")
        devices = devices[:n_devices]
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


# XLA's CPU backend vectorizes with 256-bit registers by default, even where the CPU has 512-bit ones.
WIDE_VECTORS = "--xla_cpu_prefer_vector_width=512"


def cpu_has_avx512() -> bool:
    """Whether this (Linux) host's CPU has AVX-512F (read from /proc/cpuinfo; False where unreadable)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "avx512f" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def use_cpu_cores(count: int | None = None, *, wide_vectors: bool = True) -> None:
    """Split the host CPU into ``count`` JAX devices (default: one per usable core) before JAX's backend
    starts. It does not start the backend itself, so ``jax.distributed.initialize`` may still follow; once
    the backend is up the devices stay as they are (no error). On GPU/TPU hosts the accelerators remain the
    devices. ``cpi-theory sweep`` calls it; in Python call it first thing.

    With a core to itself, a device advances cache-sized groups of runs (the engine's ``core_group_size``):
    1.5x the one-device whole-shard vmap for the reduced engine on 2 cores (benchmarks/RESULTS.md).

    ``wide_vectors``: on a CPU with AVX-512, also ask XLA for 512-bit vectors (:data:`WIDE_VECTORS`, added to
    ``XLA_FLAGS`` unless that already sets a vector width): the reduced engine's elementwise step runs 1.2x
    faster (benchmarks/loop_body.py; results agree with the default width within the engine's 1e-13)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if wide_vectors and "xla_cpu_prefer_vector_width" not in flags and cpu_has_avx512():
        os.environ["XLA_FLAGS"] = f"{flags} {WIDE_VECTORS}".strip()
    if count is None:
        count = int(os.environ.get("JAX_NUM_CPU_DEVICES") or usable_cores())
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError("count", f"CPU devices: must be an integer >= 1, got {count!r}")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend is already up: keep its devices
        pass


# Traces of the chunk program so far: one per compiled bucket (a sweep reports the increase).
TRACES = [0]


@functools.cache
def _accepts_option(platform: str, name: str, value) -> bool:
    """Whether this XLA compiles with ``name=value`` on ``platform`` (a tiny program, compiled once)."""
    try:
        device = jax.local_devices(backend=platform)[0]
    except RuntimeError:  # no such platform in this process
        return False
    x = jax.device_put(np.float32(0), device)
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(x).compile()
    except RuntimeError as error:
        # XLA refuses an option it does not know, or a value it cannot take, as INVALID_ARGUMENT: leave the
        # option out. Any other failure is not about the option: raise it.
        if "INVALID_ARGUMENT" in str(error):
            return False
        raise
    return True


def known_compiler_options(options, platform: str) -> dict:
    """The entries of ``options`` that this XLA accepts on ``platform`` (an engine's compile options are
    speed settings: where a jaxlib no longer knows one, or the platform is absent, the program compiles
    without it). Values are XLA option values: ``bool``, ``int``, ``float`` or ``str``."""
    for name, value in options.items():
        if not isinstance(value, bool | int | float | str):
            raise ConfigError(
                f"compiler_options[{name!r}]", f"must be a bool, int, float or str, got {value!r}"
            )
    return {name: value for name, value in options.items() if _accepts_option(platform, name, value)}


@functools.cache
def compiled_chunk(
    engine: RegisteredEngine,
    bucket: tuple,
    recording: Recording,
    group: int | None,
    mesh: Mesh,
    on_trace=None,
) -> Callable[[ToyParams], RunOutput]:
    """The jitted program of one bucket: columns of runs (sharded over ``mesh``) -> their :class:`RunOutput`."""
    one = engine.batch_run(bucket, recording)

    def local(params: ToyParams) -> RunOutput:
        TRACES[0] += 1
        if on_trace is not None:
            on_trace()
        return run_batched(one, params, group)

    # check_vma=False: the trainer's scan starts from constants that are the same on every device.
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=P(BATCH_AXIS), out_specs=P(BATCH_AXIS), check_vma=False
    )
    platform = mesh.devices.flat[0].platform
    options = known_compiler_options(engine.compiler_options.get(platform, {}), platform)
    return jax.jit(sharded, compiler_options=options or None)


def to_devices(params: ToyParams, mesh: Mesh) -> ToyParams:
    """Host columns -> (possibly multi-host) global arrays sharded over the run axis; every process holds
    the same host columns."""
    sharding = NamedSharding(mesh, P(BATCH_AXIS))
    return params.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index, x=x: x[index]))


def to_host(outputs: RunOutput, n_runs: int) -> RunOutput:
    """The first ``n_runs`` runs of a chunk's outputs as NumPy arrays (gathered from every host)."""
    wait_for(outputs)  # in Python, not inside XLA, so that Ctrl-C interrupts a long chunk at once
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        outputs = multihost_utils.process_allgather(outputs, tiled=True)
    else:
        outputs = jax.device_get(outputs)
    return jax.tree.map(lambda x: np.asarray(x)[:n_runs], outputs)


def pad_runs(runs: np.ndarray, size: int) -> np.ndarray:
    """``runs`` padded to ``size`` by repeating its last run (the padding's results are dropped)."""
    return np.concatenate([runs, np.full(size - runs.size, runs[-1], dtype=runs.dtype)])


def summary_variables(output: RunOutput, steps: int) -> dict[str, np.ndarray]:
    """:data:`SUMMARY_VARIABLES` of host outputs. A run diverged when the loop saw a non-finite loss, a
    recorded M_C was not finite, or the final loss is not; its summaries are NaN (steps -1) and
    ``diverged_step`` names the first bad step. ``inversion_depth`` = peak - final."""
    online = output.summary
    counted = np.asarray(output.first_nonfinite_step)
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


@functools.cache
def _kernel_of(engine: RegisteredEngine, bucket: tuple, recording: Recording, on_trace=None):
    """The engine's CPU kernel for a bucket (compiled once; counted in :data:`TRACES` as a compilation), or
    None."""
    kernel = (
        engine.cpu_kernel.for_engine(engine, bucket, recording) if engine.cpu_kernel is not None else None
    )
    if kernel is not None:
        TRACES[0] += 1
        if on_trace is not None:
            on_trace()
    return kernel


@dataclasses.dataclass(frozen=True)
class ChunkRunner:
    """How a batch of runs goes to the devices: the engine, the recording, the mesh, the chunk size (a
    multiple of the device count) and the runs a device advances together (``group``; None: its shard).

    ``cpu_kernel``: on a CPU (one process), buckets for which the engine has a CPU kernel
    (:attr:`RegisteredEngine.cpu_kernel`) run there, on as many threads as the mesh has cores, instead of the
    XLA program; False: always the XLA program."""

    engine: RegisteredEngine
    recording: Recording
    mesh: Mesh
    chunk_size: int
    group: int | None
    on_trace: Callable | None = None
    cpu_kernel: bool = True

    @classmethod
    def create(
        cls,
        engine: str | RegisteredEngine,
        recording: Recording,
        *,
        chunk_size: int | None = None,
        group: int | None | str = "engine",
        devices: int | None = None,
        n_runs: int | None = None,
        on_trace=None,
        cpu_kernel: bool = True,
    ) -> "ChunkRunner":
        """Defaults from the engine and the devices (chunk and group sizes by platform); the chunk size is
        cut to ``n_runs`` and rounded up to a multiple of the device count."""
        eng = get_engine(engine) if isinstance(engine, str) else engine
        mesh = device_mesh(devices)
        platform = device_platform()
        group = eng.default_group_size(platform, mesh.size) if group == "engine" else group
        if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
            raise ConfigError("group", f"must be a positive integer or None, got {group!r}")
        if chunk_size is None:
            chunk_size = eng.default_chunk_size(platform)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError("--chunk-size", f"must be a positive integer, got {chunk_size!r}")
        if n_runs is not None:
            chunk_size = min(chunk_size, max(n_runs, 1))
        chunk_size = math.ceil(chunk_size / mesh.size) * mesh.size  # every device gets an equal shard
        if not isinstance(cpu_kernel, bool):
            raise ConfigError("cpu_kernel", f"must be True or False, got {cpu_kernel!r}")
        return cls(eng, recording, mesh, chunk_size, group, on_trace, cpu_kernel)

    @property
    def n_devices(self) -> int:
        return self.mesh.size

    @property
    def may_use_kernel(self) -> bool:
        """Whether buckets may run on the engine's CPU kernel here (a CPU mesh in one process)."""
        return (
            self.cpu_kernel
            and self.engine.cpu_kernel is not None
            and self.mesh.devices.flat[0].platform == "cpu"
            and jax.process_count() == 1
        )

    def kernel(self, bucket: tuple):
        """The CPU kernel that runs ``bucket`` here, or None (the XLA program runs it)."""
        if not self.may_use_kernel:
            return None
        return _kernel_of(self.engine, bucket, self.recording, self.on_trace)

    def describe(self, bucket: tuple) -> str:
        """A bucket and what computes it here, in words."""
        on_kernel = " on the CPU kernel" if self.kernel(bucket) is not None else ""
        return self.engine.describe(bucket) + on_kernel

    @property
    def kernel_threads(self) -> int:
        """Threads of the CPU kernel: the cores behind the mesh's devices."""
        per_device = max(1, usable_cores() // max(1, len(jax.devices("cpu"))))
        return self.mesh.size * per_device

    def launch(self, bucket: tuple, params: ToyParams) -> RunOutput:
        """Dispatch one chunk (host columns of exactly ``chunk_size`` runs); returns device arrays at once,
        or, where the CPU kernel runs the bucket, host arrays once it is done."""
        kernel = self.kernel(bucket)
        if kernel is not None:
            return kernel(params, self.kernel_threads)
        program = compiled_chunk(self.engine, bucket, self.recording, self.group, self.mesh, self.on_trace)
        return program(to_devices(params, self.mesh))

    def pipeline(self, chunks: Iterator[tuple[object, tuple, Callable[[], ToyParams], int]]):
        """Run ``(tag, bucket, columns(), n_runs)`` chunks one after another with the next one dispatched
        before the previous one is gathered; yields ``(tag, host RunOutput of its n_runs runs)``."""
        pending = None
        for tag, bucket, columns, n_runs in chunks:
            outputs = self.launch(bucket, columns())
            if pending is not None:
                yield pending[0], to_host(pending[1], pending[2])
            pending = (tag, outputs, n_runs)
        if pending is not None:
            yield pending[0], to_host(pending[1], pending[2])


def buckets_of(engine: RegisteredEngine, params: ToyParams) -> tuple[list[tuple], np.ndarray]:
    """The distinct buckets of columns of runs (sorted) and each run's index into them."""
    columns = params.columns()
    n = params.n_runs
    values = engine.bucket_columns(
        {key: np.asarray(columns[key], dtype=np.float64) for key in engine.bucket_reads}
    )
    rows = np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in values], axis=1)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    keys = [engine.bucket_key(tuple(row)) for row in distinct]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return [keys[i] for i in order], rank[np.asarray(inverse).reshape(-1)]


@dataclasses.dataclass(frozen=True)
class Batch:
    """The results of many runs (leading axis = the runs, in the order given).

    ``summary``: :data:`SUMMARY_VARIABLES` per run; ``trajectory``: metric -> values at
    :attr:`stored_steps` (``per_class_*`` with a trailing data-class axis); ``buckets``: what computed
    them (one compiled program each)."""

    engine: str
    recording: Recording
    summary: dict
    trajectory: dict
    buckets: tuple[str, ...]

    @property
    def stored_steps(self) -> np.ndarray:
        return self.recording.stored_steps

    @property
    def n_runs(self) -> int:
        return int(self.summary["start"].shape[0])

    def raise_if_diverged(self, detail: str = "lower the learning rate") -> None:
        """Raise :class:`DivergenceError` naming the first run and step that stopped being finite."""
        raise_if_diverged(self.summary["diverged_step"], detail)


def simulate_many(
    params: ToyParams,
    *,
    steps: int,
    record_every: int = 1,
    store_every: int | None = None,
    metrics: tuple[str, ...] = ("context_reliance",),
    engine: str = "reduced",
    chunk_size: int | None = None,
    devices: int | None = None,
    group: int | None | str = "engine",
    check: bool = True,
    cpu_kernel: bool = True,
) -> Batch:
    """Many runs through one engine: ``params`` holds a column per parameter (:meth:`ToyParams.stack`,
    :meth:`ToyParams.from_columns`); each run takes ``steps`` exact GD steps.

    The summary of M_C is over the steps 0, ``record_every``, ... and the last; ``metrics`` are kept at the
    steps 0, ``store_every``, ... and the last (default ``store_every = record_every``; 0: summaries only).
    ``devices``: how many of the devices to shard the runs over (default all); ``group``: runs a device advances
    together (None: its whole shard; default: the engine's choice for the platform and device count).
    With ``check`` (default) every run is validated first (the one rule table and the engine's own rules).
    Diverged runs are flagged in ``summary`` (:meth:`Batch.raise_if_diverged` raises for them).
    ``cpu_kernel``: on a CPU, let the engine's CPU kernel run the buckets it has one for (the reduced engine's
    summaries and stored M_C; within 1e-13 of the XLA program); False: the XLA program only.
    """
    require_float64()
    eng = get_engine(engine)
    if not isinstance(params, ToyParams):
        raise ConfigError("params", f"must be a cpi_theory.ToyParams of columns, got {type(params).__name__}")
    n_runs = params.n_runs
    if n_runs is None:
        params = params.map(lambda x: np.asarray(x, dtype=np.float64)[None])
        n_runs = 1
    host = params.map(lambda x: np.broadcast_to(np.asarray(x, dtype=np.float64), (n_runs,)))
    if check:
        host.validate(eng.rules)
    store_every = record_every if store_every is None else store_every
    recording = Recording(steps, record_every, store_every, tuple(metrics))
    runner = ChunkRunner.create(
        eng,
        recording,
        chunk_size=chunk_size,
        group=group,
        devices=devices,
        n_runs=n_runs,
        cpu_kernel=cpu_kernel,
    )
    buckets, ids = buckets_of(eng, host)
    size = runner.chunk_size

    def chunks():
        for b, bucket in enumerate(buckets):
            members = np.flatnonzero(ids == b)
            for start in range(0, members.size, size):
                runs = members[start : start + size]
                padded = pad_runs(runs, size)
                yield runs, bucket, (lambda padded=padded: host.take(padded)), runs.size

    summary: dict[str, np.ndarray] = {}
    trajectory: dict[str, np.ndarray] = {}
    for runs, output in runner.pipeline(chunks()):
        values = summary_variables(output, steps)
        for target, source in ((summary, values), (trajectory, output.trajectory)):
            for name, value in source.items():
                if name not in target:
                    target[name] = np.empty((n_runs, *value.shape[1:]), dtype=value.dtype)
                target[name][runs] = value
    return Batch(eng.name, recording, summary, trajectory, tuple(runner.describe(b) for b in buckets))
