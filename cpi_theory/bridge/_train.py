"""Pretraining to memorization, then finetuning on the mixture, with jitted steps and npz checkpoints.

Training is functional: the model is split into a graph definition, the trainable parameters and the frozen
ones, so QK-only finetuning differentiates and updates only ``w_query``/``w_key`` and hands every other
array through untouched (bit-identical). Steps run in ``lax.scan`` chunks to keep Python dispatch out of
the loop on CPU.

optax's Adam mixes a Python float with its int32 step count, which JAX's strict dtype promotion rejects, so
only the optimizer update is traced under standard promotion; all model arithmetic is explicitly float32.
"""

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from .._errors import ConfigError, DivergenceError
from ._measure import make_measure_fn
from ._model import ModelConfig, Transformer, qk_filter
from ._world import FactWorld, pretraining_batch

OPTIMIZERS = ("gd", "sgd", "adam")
PARAM_SETS = ("all", "qk")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    chunk: int = 50  # steps per jitted scan
    seed: int = 0

    def __post_init__(self):
        for key in ("steps", "batch_size", "chunk"):
            if getattr(self, key) < 1:
                raise ConfigError(f"pretrain.{key}", f"must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError("pretrain.lr", f"must be > 0, got {self.lr}")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 200
    optimizer: str = "gd"  # "gd": full-batch gradient descent as in the theory; "sgd"/"adam": minibatches
    lr: float = 0.1
    batch_size: int = 32  # minibatch size for "sgd"/"adam"
    params: str = "all"  # "all" or "qk" (only attention query/key weights train)
    measure_every: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("finetune.optimizer", f"must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.params not in PARAM_SETS:
            raise ConfigError("finetune.params", f"must be one of {PARAM_SETS}, got {self.params!r}")
        for key in ("steps", "batch_size", "measure_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"finetune.{key}", f"must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError("finetune.lr", f"must be > 0, got {self.lr}")


def _last_token_loss(graphdef, states, tokens_BxL, targets_B):
    logits_BxLxV, _ = nnx.merge(graphdef, *states)(tokens_BxL)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV[:, -1], targets_B).mean()


@functools.cache
def make_tx(optimizer: str, lr: float) -> optax.GradientTransformation:
    """One optimizer object per (name, lr), so the jitted step below compiles once per setting."""
    return optax.adam(lr) if optimizer == "adam" else optax.sgd(lr)


@functools.partial(jax.jit, static_argnums=(0, 1))
def scan_steps(graphdef, tx, trainable, frozen, opt_state, tokens_TxBxL, targets_TxB):
    """T optimizer steps, one batch each; returns (trainable, opt_state, losses_T)."""

    def one_step(carry, batch):
        trainable, opt_state = carry
        tokens_BxL, targets_B = batch
        loss, grads = jax.value_and_grad(
            lambda t: _last_token_loss(graphdef, (t, frozen), tokens_BxL, targets_B)
        )(trainable)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, opt_state, trainable)
            trainable = optax.apply_updates(trainable, updates)
        return (trainable, opt_state), loss

    (trainable, opt_state), losses_T = jax.lax.scan(
        one_step, (trainable, opt_state), (tokens_TxBxL, targets_TxB)
    )
    return trainable, opt_state, losses_T


def init_optimizer(tx, trainable):
    with jax.numpy_dtype_promotion("standard"):
        return tx.init(trainable)


def check_finite(losses: np.ndarray, first_step: int) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise DivergenceError(first_step + int(bad[0]))


def pretrain(
    fact_world: FactWorld, model_config: ModelConfig, config: PretrainConfig, progress: bool = True
) -> tuple[Transformer, np.ndarray]:
    """Train a fresh model with Adam on minibatches of the pretraining corpus. Returns (model, losses)."""
    model = Transformer(model_config)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    tx = make_tx("adam", config.lr)
    opt_state = init_optimizer(tx, params)
    rng = np.random.default_rng([config.seed, fact_world.config.seed, 11])
    losses = []
    bar = tqdm(total=config.steps, desc="pretrain", disable=not progress, leave=False)
    done = 0
    while done < config.steps:
        n = min(config.chunk, config.steps - done)
        batches = [pretraining_batch(fact_world, rng, config.batch_size) for _ in range(n)]
        tokens = jnp.asarray(np.stack([b.tokens for b in batches]), dtype=jnp.int32)
        targets = jnp.asarray(np.stack([b.targets for b in batches]), dtype=jnp.int32)
        params, opt_state, chunk_losses = scan_steps(graphdef, tx, params, frozen, opt_state, tokens, targets)
        chunk_losses = np.asarray(chunk_losses)
        check_finite(chunk_losses, done)
        losses.append(chunk_losses)
        done += n
        bar.update(n)
        bar.set_postfix(loss=f"{float(chunk_losses[-1]):.3f}")
    bar.close()
    nnx.update(model, params)
    return model, np.concatenate(losses)


def finetune(
    model: Transformer, fact_world: FactWorld, config: FinetuneConfig, progress: bool = True
) -> tuple[Transformer, dict[str, np.ndarray]]:
    """Finetune a copy of ``model`` on the fact world's mixture, measuring every ``measure_every`` steps.

    Returns (finetuned model, trajectory) where the trajectory maps each measurement name (and ``step``)
    to an array with one entry per measurement, step 0 (before any update) included.
    """
    data = fact_world.finetune_set()
    n_points = len(data)
    trainable_filter = qk_filter() if config.params == "qk" else nnx.Param
    graphdef, trainable, frozen = nnx.split(nnx.clone(model), trainable_filter, ...)
    tx = make_tx(config.optimizer, config.lr)
    opt_state = init_optimizer(tx, trainable)
    measure = make_measure_fn(graphdef, fact_world)
    rng = np.random.default_rng([config.seed, fact_world.config.seed, 13])

    def batches(n_steps):
        if config.optimizer == "gd":
            idx = np.broadcast_to(np.arange(n_points), (n_steps, n_points))
        else:
            size = min(config.batch_size, n_points)
            idx = np.stack([rng.permutation(n_points)[:size] for _ in range(n_steps)])
        return jnp.asarray(data.tokens[idx], dtype=jnp.int32), jnp.asarray(data.targets[idx], dtype=jnp.int32)

    records = [{"step": 0, **jax.device_get(measure(trainable, frozen))}]
    losses = []
    bar = tqdm(
        total=config.steps,
        desc=f"finetune[{config.optimizer},{config.params}]",
        disable=not progress,
        leave=False,
    )
    done = 0
    while done < config.steps:
        n = min(config.measure_every, config.steps - done)
        trainable, opt_state, chunk_losses = scan_steps(
            graphdef, tx, trainable, frozen, opt_state, *batches(n)
        )
        chunk_losses = np.asarray(chunk_losses)
        check_finite(chunk_losses, done)
        losses.append(chunk_losses)
        done += n
        records.append({"step": done, **jax.device_get(measure(trainable, frozen))})
        bar.update(n)
    bar.close()
    trajectory = {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]}
    trajectory["train_loss"] = np.concatenate(losses)
    return nnx.merge(graphdef, trainable, frozen), trajectory


def measure_model(model: Transformer, fact_world: FactWorld) -> dict[str, np.ndarray]:
    """The measurements of :func:`cpi_theory.bridge.make_measure_fn` on one model, as numpy."""
    graphdef, state = nnx.split(model)
    return {k: np.asarray(v) for k, v in jax.device_get(make_measure_fn(graphdef, fact_world)(state)).items()}


def _flat_params(model: Transformer) -> dict[str, jax.Array]:
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def save_checkpoint(model: Transformer, directory: str | Path) -> Path:
    """Write ``params.npz`` and ``model.json`` under ``directory`` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "params.npz", **{k: np.asarray(v) for k, v in _flat_params(model).items()})
    (directory / "model.json").write_text(json.dumps(dataclasses.asdict(model.config), indent=1) + "\n")
    return directory


def load_checkpoint(directory: str | Path) -> Transformer:
    """Rebuild the model saved by :func:`save_checkpoint`."""
    directory = Path(directory)
    model = Transformer(ModelConfig(**json.loads((directory / "model.json").read_text())))
    stored = np.load(directory / "params.npz")
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    restored = []
    for path, leaf in leaves:
        key = jax.tree_util.keystr(path)
        if key not in stored or stored[key].shape != leaf.shape:
            raise ValueError(f"checkpoint {directory}: parameter {key} missing or of the wrong shape")
        restored.append(jnp.asarray(stored[key], dtype=leaf.dtype))
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, restored))
    return model
