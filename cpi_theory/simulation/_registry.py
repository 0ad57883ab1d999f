"""The one engine registry: for each engine, how configurations become runs (one, or a batch of one shape).

A registered engine has:
- ``run_config(config)`` -> :class:`cpi_theory.engine.Recorded`: one run (what :func:`simulate` calls);
- ``bucket_key(config)``: configs with equal keys give arrays of equal shapes (one compilation per key);
- ``inputs(configs)``: host (NumPy) arrays for a chunk, ``(shared, per_run)``: ``shared`` is the same for
  every run of the bucket (replicated on every device), ``per_run`` has a leading run axis (sharded);
- ``run_one(shared, per_run_slice, steps=, record_every=)`` -> ``(records, first_nonfinite_step)``, pure JAX;
- ``vmap_width``: how many runs one device advances together (``None``: its whole shard at once).

Both paths call the same jitted loop (:func:`cpi_theory.engine.run_recorded`) through the engine's trainer.
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from .._errors import ConfigError
from ..config._config import Config
from ..engine._loop import Recorded
from ..model._pretrained import pretrained_state
from ..model._train import train
from ..model._world import World, build_world
from ..reduced._engine import reduced_param_values, reduced_params
from ..reduced._minimal import Regime, minimal_summary, minimal_train, regime_of, to_general

# Keys that do not enter the world: the learning rates and the pretrained W_KQ scale are per-run scalars,
# steps and record_every are fixed per sweep.
_NOT_IN_WORLD = ("relation_score", "lr_kq", "lr_v", "steps", "record_every")


@dataclasses.dataclass(frozen=True)
class RegisteredEngine:
    """How the configurations of one engine become runs: one (``run_config``) or a batch (the rest)."""

    name: str
    run_config: Callable[[Config], Recorded] | None  # None: an engine for batches only (sweeps)
    bucket_key: Callable[[Config], tuple]
    inputs: Callable[[Sequence[Config]], tuple]
    run_one: Callable
    vmap_width: int | None
    default_chunk_size: int
    # run_one(..., summaries_only=True) returns {"summary": {field: (runs,)}} instead of records
    summaries: bool = False


# -- full engine: the d x d model ---------------------------------------------------------------------------
def _full_run_config(config: Config) -> Recorded:
    world = build_world(config)
    state0 = pretrained_state(world, config.relation_score)
    return train(
        world, state0, config.lr_kq, config.lr_v, steps=config.steps, record_every=config.record_every
    )


def _full_bucket_key(config: Config) -> tuple:
    """World shapes depend on the vocabulary and the number of points only (not on the class split).

    Runs with W_V frozen (lr_v = 0) get buckets of their own: the trainer then skips the d x d products,
    but only when lr_v is one number for the whole vmapped batch (a per-run lr_v makes its ``lax.cond``
    a select that computes both paths)."""
    return (config.n_subjects, config.n_answers, int(sum(config.class_counts())), config.lr_v == 0)


def _world_key(config: Config) -> tuple:
    return tuple(v for k, v in config.to_dict().items() if k not in _NOT_IN_WORLD)


def _full_inputs(configs: Sequence[Config]):
    worlds: dict[tuple, World] = {}  # runs that differ only in lrs/relation_score share one world
    for config in configs:
        key = _world_key(config)
        if key not in worlds:
            worlds[key] = jax_tree_to_numpy(build_world(config))
    per_run_worlds = [worlds[_world_key(c)] for c in configs]
    # Embeddings depend only on the vocabulary (the bucket), so one copy serves the chunk; so does lr_v = 0
    # in a frozen-W_V bucket (None: per-run lr_v).
    frozen = all(c.lr_v == 0 for c in configs)
    shared = (per_run_worlds[0].embeddings, np.zeros((), dtype=np.float64) if frozen else None)
    stacked = World(
        **{
            f.name: (
                None if f.name == "embeddings" else np.stack([getattr(w, f.name) for w in per_run_worlds])
            )
            for f in dataclasses.fields(World)
        }
    )
    scalars = {
        key: np.asarray([getattr(c, key) for c in configs], dtype=np.float64)
        for key in ("relation_score", "lr_kq", "lr_v")
    }
    return shared, (stacked, scalars)


def jax_tree_to_numpy(world: World) -> World:
    return World(**{f.name: np.asarray(getattr(world, f.name)) for f in dataclasses.fields(World)})


def _full_run_one(shared, per_run, *, steps: int, record_every: int, bucket=None, summaries_only=False):
    del bucket, summaries_only  # the bucket's shapes are the inputs'; no online summaries
    (embeddings, shared_lr_v), (world, scalars) = shared, per_run
    world = dataclasses.replace(world, embeddings=embeddings)
    state0 = pretrained_state(world, scalars["relation_score"])
    lr_v = scalars["lr_v"] if shared_lr_v is None else shared_lr_v
    result = train(world, state0, scalars["lr_kq"], lr_v, steps=steps, record_every=record_every)
    return result.records, result.first_nonfinite_step


FULL = RegisteredEngine(
    name="full",
    run_config=_full_run_config,
    bucket_key=_full_bucket_key,
    inputs=_full_inputs,
    run_one=_full_run_one,
    # With W_V trained, each step is small d x d products: on CPU, wide vmaps spill the per-run state
    # (~0.3 MB at the default size) out of cache, so each device advances a few runs at a time.
    vmap_width=8,
    default_chunk_size=256,
)


# -- reduced engine: the exact class-level dynamics, minimal state per regime (cpi_theory.reduced._minimal) -----
def _reduced_run_config(config: Config) -> Recorded:
    params = reduced_params(config)
    regime = regime_of(params)
    # compile_per_steps=False: one compiled program serves every ``steps`` up to the next power of two.
    out = minimal_train(
        params, steps=config.steps, record_every=config.record_every, regime=regime, compile_per_steps=False
    )
    records = {k: v for k, v in out.records.items() if k != "state"}
    return dataclasses.replace(out, records=records, final_state=to_general(out.final_state.x, regime))


def _config_regime(config: Config) -> Regime:
    n_c, n_cs, n_s, n_aug = config.class_counts()
    return Regime(value_trained=config.lr_v != 0, has_s=n_s != 0, has_aug=n_aug != 0)


def _reduced_inputs(configs: Sequence[Config]):
    # reduced_params builds device arrays (milliseconds per run): stack its plain-float values instead.
    rows = [reduced_param_values(c) for c in configs]
    return None, {k: np.asarray([r[k] for r in rows], dtype=np.float64) for k in rows[0]}


def _reduced_run_one(shared, params, *, steps: int, record_every: int, bucket: tuple, summaries_only=False):
    del shared
    regime = Regime(*bucket)
    if summaries_only:
        result = minimal_summary(params, steps=steps, record_every=record_every, regime=regime)
        return {"summary": result.records}, result.first_nonfinite_step
    result = minimal_train(params, steps=steps, record_every=record_every, regime=regime)
    records = {k: v for k, v in result.records.items() if k != "state"}
    return records, result.first_nonfinite_step


REDUCED = RegisteredEngine(
    name="reduced",
    run_config=_reduced_run_config,
    # No shape depends on vocabulary or class sizes; the regime (W_V trained, S / augmented points present)
    # picks the generated update: one compilation per regime.
    bucket_key=lambda config: dataclasses.astuple(_config_regime(config)),
    inputs=_reduced_inputs,
    run_one=_reduced_run_one,
    # A step is elementwise over the runs: batching the whole shard turns it into vector ops.
    vmap_width=None,
    default_chunk_size=4096,
    summaries=True,
)


# Engines by name: the one registry that simulate, sweeps and figures use.
ENGINES: dict[str, RegisteredEngine] = {"full": FULL, "reduced": REDUCED}


def get_engine(name: str) -> RegisteredEngine:
    """The registered engine called ``name``; a :class:`ConfigError` naming ``engine`` otherwise."""
    if name not in ENGINES:
        raise ConfigError("engine", f"must be one of {sorted(ENGINES)}, got {name!r}")
    return ENGINES[name]
