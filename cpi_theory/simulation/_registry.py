"""The one engine registry: what each engine is, how one run and a batch of runs go through it, and the
facts about it that the batched door, sweeps and memory estimates need (no ``if engine == ...``).

A :class:`RegisteredEngine` has:

- ``run_config(config)`` -> :class:`cpi_theory.engine.Recorded`: one run (what :func:`simulate` calls);
- a *bucket* of a run (``bucket_reads``, ``bucket_columns``, ``bucket_key``): runs of one bucket share one
  compiled program (for the reduced engine the regime, for the full engine the shapes), computed on whole
  columns of runs at once;
- ``batch_run(bucket, recording)`` -> a pure-JAX function of ONE run's :class:`ToyParams` (the batched door
  vmaps and shards it) returning a :class:`RunOutput` whose summary and stored trajectory are computed on
  the device, keeping no unrecorded step;
- ``rules``: validation rules of its own beside :data:`cpi_theory.config.RULES`;
- memory per run (``state_bytes``, ``output_bytes``), default chunk and group sizes per platform (how many
  runs a chunk holds, how many runs a device advances together), and a ``describe`` of a bucket;
- speed settings that never change a result's meaning beyond rounding: XLA ``compiler_options`` per
  platform, and a ``cpu_kernel`` that computes a bucket's runs on a CPU without XLA.
"""

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..config._config import Config
from ..config._params import ToyParams
from ..config._rules import CLASS_COUNT_KEYS, INTEGER_CLASS_COUNT_RULES, Rule
from ..engine._loop import Recorded, recorded_steps
from ..engine._trajectory import CLASS_METRICS, PROBE_METRICS
from ..model._pretrained import pretrained_state
from ..model._train import train
from ..model._world import Vocabulary, build_world, embeddings, params_world
from ..reduced._cpu_kernel import summary_kernel
from ..reduced._inputs import as_float64, symbol_values
from ..reduced._minimal import (
    SINGLE_RUN_UNROLL,
    SUMMARY_FIELDS,
    Regime,
    minimal_metrics,
    minimal_summary,
    minimal_train,
    probe_fn,
    regime_of,
    to_general_host,
)

FLOAT_BYTES = 8  # float64
# Trajectory variables a run can keep: the probe metrics, and per-class metrics (with a data_class axis).
PER_CLASS_PREFIX = "per_class_"
TRAJECTORY_METRICS = PROBE_METRICS + tuple(PER_CLASS_PREFIX + m for m in CLASS_METRICS)


@dataclasses.dataclass(frozen=True)
class Recording:
    """What a batch keeps of each run: the summary of M_C over the steps 0, ``record_every``, ... and the
    last, and (``store_every`` > 0) the ``metrics`` at the steps 0, ``store_every``, ... and the last.

    ``store_every`` must be 0 or a multiple of ``record_every``."""

    steps: int
    record_every: int = 1
    store_every: int = 0
    metrics: tuple[str, ...] = ("context_reliance",)

    def __post_init__(self):
        for name, value, low in (("steps", self.steps, 0), ("record_every", self.record_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ConfigError(name, f"must be an integer >= {low}, got {value!r}")
        every = self.store_every
        if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 0:
            raise ConfigError(
                "trajectory_every", f"must be an integer >= 0 (0: no trajectories), got {every!r}"
            )
        if every and every % self.record_every:
            raise ConfigError(
                "trajectory_every", f"must be a multiple of record_every={self.record_every}, got {every}"
            )
        unknown = [m for m in self.metrics if m not in TRAJECTORY_METRICS]
        if unknown or not self.metrics:
            raise ConfigError(
                "trajectory_metrics", f"unknown metric {unknown[:1]} (valid: {TRAJECTORY_METRICS})"
            )
        object.__setattr__(self, "metrics", tuple(dict.fromkeys(self.metrics)))

    @property
    def recorded_steps(self) -> np.ndarray:
        """Steps whose M_C enters the summary."""
        return recorded_steps(self.steps, self.record_every)

    @property
    def stored_steps(self) -> np.ndarray:
        """Steps whose metrics are kept (empty without ``store_every``)."""
        if not self.store_every:
            return np.zeros(0, dtype=np.int64)
        return recorded_steps(self.steps, self.store_every)


@dataclasses.dataclass(frozen=True)
class RunOutput:
    """What the device hands back for one run (leading run axes in a batch): the summary of M_C
    (:data:`SUMMARY_FIELDS`: start, peak, peak_step, final, final_loss, first_nonfinite_reliance), the
    first step whose loss was not finite (-1: none) and the stored trajectory (metric name -> values at
    :attr:`Recording.stored_steps`; ``per_class_*`` with a trailing data-class axis)."""

    summary: dict
    first_nonfinite_step: Any
    trajectory: dict


jax.tree_util.register_dataclass(
    RunOutput, data_fields=["summary", "first_nonfinite_step", "trajectory"], meta_fields=[]
)


@dataclasses.dataclass(frozen=True)
class CpuKernel:
    """The fast CPU form of one ``batch_run``: ``build(bucket, recording)`` -> None (no kernel for that bucket:
    the XLA program runs) or ``run(params, threads)`` -> a host :class:`RunOutput` of NumPy columns (compiling
    happens in ``build``). It serves only the ``batch_run`` it names: an engine derived with another
    ``batch_run`` (``dataclasses.replace``) does not run it."""

    batch_run: Callable
    build: Callable[[tuple, Recording], Callable[[ToyParams, int], RunOutput] | None]

    def for_engine(self, engine: "RegisteredEngine", bucket: tuple, recording: Recording):
        if engine.batch_run is not self.batch_run:
            return None
        return self.build(bucket, recording)


# eq=False: an engine is itself (hashable by identity: compiled programs are cached per engine).
@dataclasses.dataclass(frozen=True, eq=False)
class RegisteredEngine:
    """One engine and the facts about it (see the module docstring)."""

    name: str
    label: str  # what computed a sweep's results, in words (its ``computed_by``)
    memory_way_out: str  # what shrinks a run that cannot fit, besides fewer runs at once
    run_config: Callable[[Config], Recorded] | None  # None: an engine for batches only
    bucket_reads: tuple[str, ...]  # the Config keys a run's bucket depends on
    bucket_columns: Callable[
        [Mapping[str, Any]], tuple
    ]  # those columns -> the bucket's columns (elementwise)
    bucket_key: Callable[[tuple], tuple]  # one row of bucket columns -> a hashable bucket
    batch_run: Callable[[tuple, Recording], Callable[[ToyParams], RunOutput]]
    describe: Callable[[tuple], str]  # a bucket, in words (the results' ``computed_by``)
    rules: tuple[Rule, ...]
    state_bytes: Callable[[int, int], int]  # (n_subjects, n_answers) -> bytes of one run in flight
    input_bytes: Callable[[int, int], int]  # bytes of one run's inputs on the host and the device
    chunk_size: Mapping[str, int]  # runs per chunk, by platform ("cpu", "gpu", "tpu")
    group_size: Mapping[str, int | None]  # runs a device advances together, by platform (None: all)
    # Runs a CPU device advances together when it has a core to itself (as many CPU devices as cores, as
    # ``cpi-theory sweep`` sets up): a group whose state stays in the core's cache for all its steps.
    core_group_size: int | None
    # Keeps the summary of M_C on the device while stepping (memory O(state) per run, whatever the steps);
    # otherwise every record_every-th step's metrics are held until the run ends.
    online_summary: bool
    # Config-steps per second a chunk runs at on a platform, roughly (measured on the 2-core CPU machine and
    # one H200; benchmarks/RESULTS.md): what a sweep's time estimate assumes.
    typical_rate: Mapping[str, float]
    # XLA compile options for the engine's batch program, by platform (e.g. the CPU backend's older fusion
    # emitter where it is measured faster); an option this XLA does not know is dropped
    # (:func:`cpi_theory.simulation._batch.known_compiler_options`), so they never change a result's meaning.
    compiler_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # A CPU kernel that computes what ``batch_run`` computes, without XLA (see :class:`CpuKernel`).
    cpu_kernel: "CpuKernel | None" = None

    def bucket_of(self, params: ToyParams) -> tuple:
        """The bucket of one run (concrete numbers)."""
        columns = params.columns()
        row = self.bucket_columns({key: np.float64(columns[key]) for key in self.bucket_reads})
        return self.bucket_key(tuple(np.asarray(c).item() for c in row))

    def output_bytes(self, recording: Recording) -> int:
        """Bytes of one run's output (device and host): its summary and stored trajectory, and for engines
        without an online summary every recorded step's metrics."""
        stored = len(recording.stored_steps) * _stored_floats(recording.metrics)
        held = 0 if self.online_summary else len(recording.recorded_steps) * RECORD_FLOATS
        return (16 + stored + held) * FLOAT_BYTES

    def estimated_seconds(self, config_steps: int, platform: str) -> float:
        """Roughly how long ``config_steps`` (runs x steps) take on ``platform``."""
        return config_steps / self.typical_rate.get(platform, self.typical_rate["cpu"])

    def default_chunk_size(self, platform: str) -> int:
        return self.chunk_size.get(platform, self.chunk_size["cpu"])

    def default_group_size(self, platform: str, n_devices: int = 1) -> int | None:
        if platform == "cpu" and n_devices >= usable_cores() and self.core_group_size is not None:
            return self.core_group_size
        return self.group_size.get(platform, self.group_size["cpu"])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# Recorded floats per recorded step of the full engine: the probe metrics and every class metric per class.
RECORD_FLOATS = len(PROBE_METRICS) + len(CLASS_METRICS) * len(CLASS_COUNT_KEYS) + 2


def _stored_floats(metrics) -> int:
    return sum(len(CLASS_COUNT_KEYS) if m.startswith(PER_CLASS_PREFIX) else 1 for m in metrics)


def _select(records: dict, metrics, index) -> dict:
    """The stored metrics of full-engine style records (leading axis = record) at ``index``."""
    out = {}
    for name in metrics:
        if name.startswith(PER_CLASS_PREFIX):
            out[name] = records["per_class"][name[len(PER_CLASS_PREFIX) :]][index]
        else:
            out[name] = records[name][index]
    return out


def summary_of_records(mc, loss, recorded: np.ndarray) -> dict:
    """:data:`SUMMARY_FIELDS` of one run's recorded M_C curve (the first maximum is the peak), in JAX."""
    step = jnp.asarray(recorded, dtype=jnp.int32)
    i_peak = jnp.argmax(mc)
    finite = jnp.isfinite(mc)
    return {
        "start": mc[0],
        "peak": mc[i_peak],
        "peak_step": step[i_peak],
        "final": mc[-1],
        "final_loss": loss[-1],
        "first_nonfinite_reliance": jnp.where(finite.all(), -1, step[jnp.argmin(finite)]),
    }


# -- full engine: the d x d model ---------------------------------------------------------------------------
def _full_run_config(config: Config) -> Recorded:
    world = build_world(config)
    state0 = pretrained_state(world, config.relation_score)
    return train(
        world, state0, config.lr_kq, config.lr_v, steps=config.steps, record_every=config.record_every
    )


def _full_bucket_columns(v) -> tuple:
    """World shapes depend on the vocabulary and the number of points only (not on the class split).

    Runs with W_V frozen (lr_v = 0) get buckets of their own: the trainer then skips the d x d products,
    but only when lr_v is one number for the whole vmapped batch (a per-run lr_v makes its ``lax.cond``
    a select that computes both paths)."""
    total = sum(v[key] for key in CLASS_COUNT_KEYS)
    return (v["n_subjects"], v["n_answers"], total, v["lr_v"] == 0)


def _full_batch_run(bucket: tuple, recording: Recording):
    """One full-engine run from its :class:`ToyParams`: the world and the pretrained state are built on the
    device from the run's numbers (:func:`cpi_theory.model.params_world`); the embeddings are the bucket's."""
    n_subjects, n_answers, n_points, frozen = bucket
    vocab = Vocabulary(n_subjects, n_answers)
    phi = embeddings(vocab)
    stored = np.searchsorted(recording.recorded_steps, recording.stored_steps)

    def run(params: ToyParams) -> RunOutput:
        world = params_world(params, vocab, n_points, jnp.asarray(phi))
        state0 = pretrained_state(world, jnp.asarray(params.relation_score, dtype=jnp.float64))
        lr_v = 0.0 if frozen else params.lr_v
        out = train(
            world, state0, params.lr_kq, lr_v, steps=recording.steps, record_every=recording.record_every
        )
        records = out.records
        summary = summary_of_records(records["context_reliance"], records["loss"], recording.recorded_steps)
        # No zero-length arrays without stored steps (lax.map's batching cannot reshape them).
        trajectory = _select(records, recording.metrics, stored) if stored.size else {}
        return RunOutput(summary, out.first_nonfinite_step, trajectory)

    return run


def _full_state_bytes(n_subjects: int, n_answers: int) -> int:
    d = int(n_subjects) + int(n_answers) + 3
    return FULL_MATRIX_COPIES * d * d * FLOAT_BYTES


def _full_input_bytes(n_subjects: int, n_answers: int) -> int:
    # The world and pretrained state are built on the device: one d x d table per run in flight; the
    # inputs themselves are a few numbers.
    return 16 * FLOAT_BYTES


# Live d x d float64 arrays of one full-engine run: W_KQ and W_V, their gradients, the pretrained value
# table and embeddings, and XLA's temporaries of the forward and backward passes. XLA's own count is about
# 6 (arguments + outputs + temporaries of the trainer) and the measured peak of a simulate about 9.
FULL_MATRIX_COPIES = 12

FULL = RegisteredEngine(
    name="full",
    label="full engine",
    memory_way_out="a smaller vocabulary or --engine reduced (exact class dynamics, no d x d matrices)",
    run_config=_full_run_config,
    bucket_reads=("n_subjects", "n_answers", *CLASS_COUNT_KEYS, "lr_v"),
    bucket_columns=_full_bucket_columns,
    bucket_key=lambda row: (int(row[0]), int(row[1]), int(row[2]), bool(row[3])),
    batch_run=_full_batch_run,
    describe=lambda bucket: (
        f"K_S={bucket[0]}, K_A={bucket[1]}, {bucket[2]} points" + (", W_V frozen" if bucket[3] else "")
    ),
    rules=INTEGER_CLASS_COUNT_RULES,
    state_bytes=_full_state_bytes,
    input_bytes=_full_input_bytes,
    # With W_V trained each step is small d x d products: on a CPU wide vmaps spill the per-run state
    # (~0.3 MB at the default size) out of cache, so a device advances a few runs at a time; a GPU
    # advances its whole shard.
    chunk_size={"cpu": 256, "gpu": 100_000, "tpu": 100_000},
    group_size={"cpu": 8, "gpu": None, "tpu": None},
    core_group_size=None,
    online_summary=False,
    typical_rate={"cpu": 9e4, "gpu": 1e6, "tpu": 1e6},
)


# -- reduced engine: the exact class-level dynamics, minimal state per regime (cpi_theory.reduced._minimal) -----
def _reduced_run_config(config: Config) -> Recorded:
    # NumPy scalars: jit transfers them in one call (float64 JAX arrays would be one dispatch each).
    params = ToyParams.from_config(config).map(np.float64)
    regime = regime_of(params)
    # compile_per_steps=False: one compiled program serves every ``steps`` up to the next power of two.
    out = minimal_train(
        params,
        steps=config.steps,
        record_every=config.record_every,
        regime=regime,
        compile_per_steps=False,
        unroll=SINGLE_RUN_UNROLL[regime.value_trained],
    )
    records = {k: v for k, v in out.records.items() if k != "state"}
    return dataclasses.replace(out, records=records, final_state=to_general_host(out.final_state.x, regime))


def _reduced_batch_run(bucket: tuple, recording: Recording):
    """One reduced run: the online summary of M_C and, where asked, the metrics of the states stored every
    ``store_every`` steps (computed on the device from those states only)."""
    regime = Regime(*bucket)
    only_reliance = recording.metrics == ("context_reliance",)

    def run(params: ToyParams) -> RunOutput:
        out = minimal_summary(
            params,
            steps=recording.steps,
            record_every=recording.record_every,
            regime=regime,
            store_every=recording.store_every,
        )
        summary = {name: out.records[name] for name in SUMMARY_FIELDS}
        trajectory = {}
        if recording.store_every:
            states = out.records["state"]
            if only_reliance:
                trajectory["context_reliance"], _ = probe_fn(regime)(
                    states, symbol_values(as_float64(params))
                )
            else:
                records = minimal_metrics(states, as_float64(params), regime)
                trajectory = _select(records, recording.metrics, slice(None))
        return RunOutput(summary, out.first_nonfinite_step, trajectory)

    return run


def _reduced_cpu_kernel(bucket: tuple, recording: Recording):
    """A bucket's summaries (and stored M_C) on the CPU kernel (:mod:`cpi_theory.reduced._cpu_kernel`: the
    whole loop with the state in registers, 2-4x the XLA program on the 2-core machine); None where other
    metrics are stored, and where llvmlite is missing."""
    if recording.store_every and recording.metrics != ("context_reliance",):
        return None
    kernel = summary_kernel(Regime(*bucket))
    if kernel is None:
        return None

    def run(params: ToyParams, threads: int) -> RunOutput:
        out = kernel.run(
            params,
            steps=recording.steps,
            record_every=recording.record_every,
            store_every=recording.store_every,
            threads=threads,
        )
        trajectory = {"context_reliance": out["context_reliance"]} if recording.store_every else {}
        return RunOutput(
            {name: out[name] for name in SUMMARY_FIELDS}, out["first_nonfinite_step"], trajectory
        )

    return run


REDUCED = RegisteredEngine(
    name="reduced",
    label="reduced engine, minimal state per regime",
    memory_way_out="",
    run_config=_reduced_run_config,
    # No shape depends on vocabulary or class sizes; the regime (W_V trained, S / augmented points present)
    # picks the generated update: one compilation per regime.
    bucket_reads=("lr_v", "n_subject_only", "n_counterfactual_augmented"),
    bucket_columns=lambda v: (v["lr_v"] != 0, v["n_subject_only"] != 0, v["n_counterfactual_augmented"] != 0),
    bucket_key=lambda row: tuple(bool(x) for x in row),
    batch_run=_reduced_batch_run,
    describe=lambda bucket: Regime(*bucket).name,
    rules=(),
    # The state and temporaries: a few hundred scalars per run whatever the vocabulary (XLA counts ~30 KB
    # per run of a vmapped chunk beside the records, for the value regimes).
    state_bytes=lambda n_subjects, n_answers: 64 * 1024,
    input_bytes=lambda n_subjects, n_answers: 16 * FLOAT_BYTES,
    # A step is elementwise over the runs: a device advances its whole shard at once (on a CPU, XLA then
    # spreads each fused step over the cores; groups of 1,024-4,096 runs were 1.3-1.5x slower, measured).
    chunk_size={"cpu": 1 << 18, "gpu": 1 << 22, "tpu": 1 << 22},
    group_size={"cpu": None, "gpu": None, "tpu": None},
    core_group_size=1024,
    online_summary=True,
    # On the 2-core machine's CPU kernel: 1.3e8 frozen, 2.3e7 value regime (XLA's program: 6e7, 5e6).
    typical_rate={"cpu": 3e7, "gpu": 4e9, "tpu": 4e9},
    # XLA's newer CPU fusion emitters cut the frozen step into 23 fusions, the older ones into 18, and run it
    # 1.2-1.4x slower; results agree within 1e-14 (benchmarks/loop_body.py, tests/test_compiler_options.py).
    compiler_options={"cpu": {"xla_cpu_use_fusion_emitters": False}},
    cpu_kernel=CpuKernel(_reduced_batch_run, _reduced_cpu_kernel),
)


# Engines by name: the one registry that simulate, the batched door, sweeps and figures use.
ENGINES: dict[str, RegisteredEngine] = {"full": FULL, "reduced": REDUCED}


def get_engine(name: str) -> RegisteredEngine:
    """The registered engine called ``name``; a :class:`ConfigError` naming ``engine`` otherwise."""
    if name not in ENGINES:
        raise ConfigError("engine", f"must be one of {sorted(ENGINES)}, got {name!r}")
    return ENGINES[name]


@functools.cache
def _platform() -> str:
    return jax.devices()[0].platform


def device_platform() -> str:
    """``cpu``, ``gpu`` or ``tpu``: the kind of the devices runs go to (chunk and group sizes follow it)."""
    return _platform()
