"""Round-two finetuning (issue 22): the recipe knobs the toy's mechanism needs, and many runs at once.

A :class:`Recipe` says how the model is finetuned:

- **parameter groups** with a learning-rate multiplier each (``lr_qk`` attention query/key, ``lr_vo``
  attention value/output, ``lr_mlp``, ``lr_embed`` token and position embeddings, ``lr_unembed``,
  ``lr_norm`` every LayerNorm); 0 freezes a group: it is left out of the differentiated state altogether;
- **LoRA** (``lora_rank`` > 0) on chosen attention projections (``lora_targets`` among q, k, v, o): the
  base model is frozen and only the ``flax.nnx.LoRA`` factors train (their group is their projection's);
  ``nnx.LoRA.__call__`` multiplies at the backend's default precision (TF32 on an H100/H200), so the
  bridge reads the factors and forms ``A @ B`` at ``precision=HIGHEST`` itself;
- the **optimizer**: ``gd`` (plain gradient steps) or ``adam`` (bias-corrected, eps 1e-8), full batch
  (``batch_size=None``: every fixed finetuning point each step) or minibatches of ``batch_size`` rows,
  drawn without replacement within each pass over the fixed points;
- a **schedule**: linear warmup over ``warmup`` steps, then ``decay`` none / linear / cosine to 0 at the
  last step; decoupled **weight decay** (``p -= lr * schedule * weight_decay * p``, AdamW's form);
- the **measurement grid**: ``n_measure`` steps spaced ``log`` (from step 1) or ``linear``, step 0 added.

Each run is a :class:`Member`: a fact world (its fixed finetuning points and probes), the share of each
minibatch that is *fresh C points* (a stream subject never used for facts and a random fact answer as
context, drawn anew for every row, so they cannot be memorized by subject) and a learning-rate scale.
:func:`finetune_members` trains members of one shape together: their parameters are stacked on a leading
axis and one jitted step is ``jax.vmap``-ped over it (on a GPU, seeds and arms in one program; on a CPU
no faster than one after the other, and no slower). The loop between measurements is a
``lax.fori_loop`` with a traced trip count, so a log grid compiles once; batches are drawn on the device.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._errors import ConfigError
from ..config._data_class import DataClass
from ._model import HIGHEST, Transformer
from ._world import CTX, FINETUNE_CLASSES, QUESTION, RELATION, FactWorld

F32 = jnp.float32
I32 = jnp.int32

#: Parameter groups of round-two finetuning, each with a multiplier ``lr_<group>`` in a :class:`Recipe`.
GROUPS = ("qk", "vo", "mlp", "embed", "unembed", "norm")
RECIPE_OPTIMIZERS = ("gd", "adam")
DECAYS = ("none", "linear", "cosine")
GRIDS = ("log", "linear")
LORA_TARGETS = ("q", "k", "v", "o")
_LORA_PARAM = {"q": "w_query", "k": "w_key", "v": "w_value", "o": "w_out"}
_LORA_GROUP = {"q": "qk", "k": "qk", "v": "vo", "o": "vo"}


def param_group(path: str) -> str:
    """The group (one of :data:`GROUPS`) of a parameter, from its path (``jax.tree_util.keystr`` or names)."""
    if "w_query" in path or "w_key" in path:
        return "qk"
    if "w_value" in path or "w_out" in path:
        return "vo"
    if "mlp_in" in path or "mlp_out" in path:
        return "mlp"
    if "norm" in path:
        return "norm"
    if "w_unembed" in path:
        return "unembed"
    if "embed" in path:
        return "embed"
    raise ValueError(f"parameter {path!r} belongs to no group")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a pretrained model is finetuned in round two (see the module docstring)."""

    steps: int = 1000
    optimizer: str = "gd"
    lr: float = 0.1
    batch_size: int | None = None  # None: full batch of the fixed points
    lr_qk: float = 1.0
    lr_vo: float = 1.0
    lr_mlp: float = 1.0
    lr_embed: float = 1.0
    lr_unembed: float = 1.0
    lr_norm: float = 1.0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    lora_alpha: float = 16.0  # LoRA update scale alpha / rank
    warmup: int = 0
    decay: str = "none"
    weight_decay: float = 0.0
    n_measure: int = 30
    grid: str = "log"

    def __post_init__(self):
        if self.optimizer not in RECIPE_OPTIMIZERS:
            raise ConfigError("optimizer", f"must be one of {RECIPE_OPTIMIZERS}, got {self.optimizer!r}")
        if self.decay not in DECAYS:
            raise ConfigError("decay", f"must be one of {DECAYS}, got {self.decay!r}")
        if self.grid not in GRIDS:
            raise ConfigError("grid", f"must be one of {GRIDS}, got {self.grid!r}")
        for key in ("steps", "n_measure"):
            if not (isinstance(getattr(self, key), int) and getattr(self, key) >= 1):
                raise ConfigError(key, f"must be an integer >= 1, got {getattr(self, key)!r}")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(
                "batch_size", f"must be None (full batch) or an integer >= 1, got {self.batch_size!r}"
            )
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError("lr", f"must be > 0, got {self.lr!r}")
        for group in GROUPS:
            value = getattr(self, f"lr_{group}")
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ConfigError(
                    f"lr_{group}", f"must be a finite multiplier >= 0 (0 freezes), got {value!r}"
                )
        if not (isinstance(self.lora_rank, int) and self.lora_rank >= 0):
            raise ConfigError("lora_rank", f"must be an integer >= 0 (0: no LoRA), got {self.lora_rank!r}")
        bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if bad or not self.lora_targets or len(set(self.lora_targets)) != len(self.lora_targets):
            raise ConfigError(
                "lora_targets", f"must be distinct names among {LORA_TARGETS}, got {self.lora_targets!r}"
            )
        if not self.lora_alpha > 0:
            raise ConfigError("lora_alpha", f"must be > 0, got {self.lora_alpha!r}")
        if not (isinstance(self.warmup, int) and 0 <= self.warmup < self.steps):
            raise ConfigError("warmup", f"must be an integer in [0, steps), got {self.warmup!r}")
        if not self.weight_decay >= 0:
            raise ConfigError("weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        if not self.trained_groups:
            raise ConfigError("lr_qk", "every group is frozen (multiplier 0): nothing would train")

    @property
    def multipliers(self) -> dict[str, float]:
        return {group: float(getattr(self, f"lr_{group}")) for group in GROUPS}

    @property
    def trained_groups(self) -> tuple[str, ...]:
        """Groups that train: those with a multiplier > 0 (with LoRA: those of the LoRA targets)."""
        live = {g for g, m in self.multipliers.items() if m > 0}
        if self.lora_rank:
            return tuple(g for g in GROUPS if g in live and g in {_LORA_GROUP[t] for t in self.lora_targets})
        return tuple(g for g in GROUPS if g in live)

    def measure_steps(self) -> np.ndarray:
        """The steps at which a run is measured: 0, then ``n_measure`` steps up to ``steps`` (unique)."""
        if self.grid == "log":
            grid = np.geomspace(1, self.steps, self.n_measure)
        else:
            grid = np.linspace(self.steps / self.n_measure, self.steps, self.n_measure)
        return np.unique(np.concatenate([[0], np.round(grid).astype(np.int64), [self.steps]]))

    def schedule_factor(self, step):
        """The learning-rate factor of ``step`` (0-based; an array or a number): warmup, then the decay."""
        step = jnp.asarray(step, dtype=F32)
        warm = jnp.minimum((step + 1.0) / max(self.warmup, 1), 1.0) if self.warmup else jnp.ones_like(step)
        span = float(self.steps - self.warmup)
        frac = jnp.clip((step - self.warmup) / span, 0.0, 1.0)
        if self.decay == "linear":
            decay = 1.0 - frac
        elif self.decay == "cosine":
            decay = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            decay = jnp.ones_like(frac)
        return jnp.where(step < self.warmup, warm, decay)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lora_targets"] = list(self.lora_targets)
        return out


@dataclasses.dataclass(frozen=True)
class Member:
    """One finetuning run: its world (fixed points, probes, stream pool), fresh-C share and lr scale."""

    world: FactWorld
    fresh_share: float = 0.0  # share of each minibatch that is fresh C points (the rest: fixed points)
    lr_scale: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.fresh_share <= 1.0:
            raise ConfigError("fresh_share", f"must lie in [0, 1], got {self.fresh_share!r}")
        if self.fresh_share > 0:
            if self.world.config.n_distractors:
                raise ConfigError("fresh_share", "fresh C points need a world without distractors")
            if not len(self.world.stream_subjects):
                raise ConfigError(
                    "fresh_share", "fresh C points need stream subjects (n_stream_subjects > 0)"
                )
        if not self.lr_scale > 0:
            raise ConfigError("lr_scale", f"must be > 0, got {self.lr_scale!r}")


class Adapters(nnx.Module):
    """``flax.nnx.LoRA`` factors per layer for the chosen attention projections (B starts at 0)."""

    def __init__(self, model: Transformer, rank: int, targets: tuple[str, ...], seed: int):
        cfg = model.config
        rngs = nnx.Rngs(params=seed)
        hk = (cfg.d_model // cfg.n_heads) * cfg.n_heads
        shapes = {
            "q": (cfg.d_model, hk),
            "k": (cfg.d_model, hk),
            "v": (cfg.d_model, hk),
            "o": (hk, cfg.d_model),
        }
        self.targets = tuple(targets)
        self.layers = nnx.List(
            [
                nnx.Dict({t: nnx.LoRA(shapes[t][0], rank, shapes[t][1], rngs=rngs) for t in targets})
                for _ in range(cfg.n_layers)
            ]
        )


def _split(model: Transformer, recipe: Recipe, seed: int):
    """(graph, trainable, frozen, adapters graph or None) of a copy of ``model`` under ``recipe``."""
    model = nnx.clone(model)
    if recipe.lora_rank:
        graphdef, frozen = nnx.split(model, nnx.Param)
        adapters = Adapters(model, recipe.lora_rank, recipe.lora_targets, seed)
        lora_graph, trainable = nnx.split(adapters, nnx.Param)
        return graphdef, trainable, frozen, lora_graph
    live = set(recipe.trained_groups)

    def is_trained(path, value) -> bool:
        names = "/".join(str(p) for p in path)
        return isinstance(value, nnx.Param) and param_group(names) in live

    graphdef, trainable, frozen = nnx.split(model, is_trained, ...)
    return graphdef, trainable, frozen, None


def _merged(graphdef, trainable, frozen, lora_graph, recipe: Recipe) -> Transformer:
    """The model whose forward pass the loss and the measurements use (LoRA deltas added at HIGHEST)."""
    if lora_graph is None:
        return nnx.merge(graphdef, trainable, frozen)
    # Functional: the deltas are added to the frozen weights' arrays before the model is built.
    factors = {
        jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(trainable)[0]
    }
    scale = jnp.asarray(recipe.lora_alpha / recipe.lora_rank, F32)
    deltas = {}
    for layer in range(len(graphdef_layers(frozen))):
        for target in recipe.lora_targets:
            a = factors[f"['layers'][{layer}]['{target}']['lora_a'].value"]
            b = factors[f"['layers'][{layer}]['{target}']['lora_b'].value"]
            deltas[(layer, _LORA_PARAM[target])] = jnp.matmul(a, b, precision=HIGHEST) * scale

    def add(path, weight):
        keys = [getattr(p, "key", getattr(p, "idx", None)) for p in path]
        if len(keys) >= 4 and keys[0] == "blocks" and keys[2] == "attn" and (keys[1], keys[3]) in deltas:
            return weight + deltas[(keys[1], keys[3])].reshape(weight.shape)
        return weight

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(add, frozen))


def graphdef_layers(frozen) -> list:
    """The blocks of a model's parameter state (one entry per layer)."""
    return list(frozen["blocks"].keys())


def _group_tree(trainable, recipe: Recipe):
    """A tree like ``trainable`` holding each leaf's group multiplier (float32 scalars)."""
    mult = recipe.multipliers

    def leaf(path, _):
        name = jax.tree_util.keystr(path)
        if recipe.lora_rank:
            target = next(t for t in recipe.lora_targets if f"'{t}'" in name)
            return jnp.asarray(mult[_LORA_GROUP[target]], F32)
        return jnp.asarray(mult[param_group(name)], F32)

    return jax.tree_util.tree_map_with_path(leaf, trainable)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _member_data(member: Member, n_fresh_probe: int = 64) -> dict:
    """The arrays one member's steps and measurements read (numpy; stacked over members later)."""
    world = member.world
    data = world.finetune_set() if _n_fixed(world) else None
    i32 = lambda x: np.asarray(x, dtype=np.int32)
    if data is None:
        seq = world.config.seq_len
        tokens, targets, classes = np.zeros((1, seq), np.int32), np.zeros(1, np.int32), np.zeros(1, np.int32)
    else:
        tokens, targets = i32(data.tokens), i32(data.targets)
        classes = i32(
            np.concatenate([np.full(len(world.finetune[c]), i) for i, c in enumerate(FINETUNE_CLASSES)])
        )
    counterfactual, recall, copy = world.counterfactual_probe(), world.recall_probe(), world.copy_probe()
    stream = world.stream_subjects if len(world.stream_subjects) else np.zeros(1, np.int32)
    rng = np.random.default_rng([world.config.seed, 17])
    fresh_subjects = rng.choice(stream, size=n_fresh_probe)
    fresh_contexts = rng.choice(world.fact_answer_ids, size=n_fresh_probe)
    return {
        "tokens": tokens,
        "targets": targets,
        "classes": classes,
        "n_fixed": np.int32(_n_fixed(world)),
        "stream": i32(stream),
        "fact_answers": i32(world.fact_answer_ids),
        "cf_tokens": i32(counterfactual.tokens),
        "cf_context": i32(counterfactual.targets),
        "cf_memory": i32(world.probe_answers),
        "recall_tokens": i32(recall.tokens),
        "copy_tokens": i32(copy.tokens),
        "copy_targets": i32(copy.targets),
        "fresh_tokens": i32(_c_rows(fresh_subjects, fresh_contexts)),
        "fresh_targets": i32(fresh_contexts),
    }


def _n_fixed(world: FactWorld) -> int:
    return sum(len(world.finetune[c]) for c in FINETUNE_CLASSES)


def _c_rows(subjects, contexts):
    """``[CTX, c, Q, s, R]`` rows (numpy or jax arrays of equal length)."""
    xp = jnp if isinstance(subjects, jax.Array) else np
    n = subjects.shape[0]
    const = lambda v: xp.full((n,), v, dtype=xp.int32)
    return xp.stack(
        [const(CTX), contexts.astype(xp.int32), const(QUESTION), subjects.astype(xp.int32), const(RELATION)],
        axis=1,
    )


def _batch(key, step, data, fresh_rows: int, batch_size: int):
    """One minibatch of ``batch_size`` rows: ``batch_size - fresh_rows`` fixed points (without replacement
    within each pass), then ``fresh_rows`` fresh C points."""
    n_valid = data["n_fixed"]
    n_total = data["tokens"].shape[0]
    fixed_rows = batch_size - fresh_rows
    tokens_parts, target_parts = [], []
    if fixed_rows:
        per_pass = jnp.maximum(n_valid // fixed_rows, 1)
        epoch, pos = step // per_pass, step % per_pass
        noise = jax.random.uniform(jax.random.fold_in(key, epoch), (n_total,), dtype=F32)
        noise = jnp.where(jnp.arange(n_total, dtype=I32) < n_valid, noise, jnp.asarray(2.0, F32))
        order = jnp.argsort(noise)
        idx = order[(pos * fixed_rows + jnp.arange(fixed_rows, dtype=I32)) % jnp.maximum(n_valid, 1)]
        tokens_parts.append(data["tokens"][idx])
        target_parts.append(data["targets"][idx])
    if fresh_rows:
        k_s, k_c = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 1_000_003), step))
        pool, answers = data["stream"], data["fact_answers"]
        subjects = pool[jax.random.randint(k_s, (fresh_rows,), 0, pool.shape[0], dtype=I32)]
        contexts = answers[jax.random.randint(k_c, (fresh_rows,), 0, answers.shape[0], dtype=I32)]
        tokens_parts.append(_c_rows(subjects, contexts))
        target_parts.append(contexts)
    return jnp.concatenate(tokens_parts), jnp.concatenate(target_parts)


def _loss(model: Transformer, tokens, targets, weights):
    logits_BxLxV, _ = model(tokens)
    logp_BxV = jax.nn.log_softmax(logits_BxLxV[:, -1], axis=-1)
    nll_B = -jnp.take_along_axis(logp_BxV, targets[:, None], axis=1)[:, 0]
    return (nll_B * weights).sum()


class _Program:
    """The jitted step loop and measurement of one (graph, recipe, member layout); see finetune_members.

    Hashed by value, so a second call with the same layout reuses the compiled programs."""

    def __init__(
        self, graphdef, lora_graph, recipe: Recipe, fresh_rows: tuple[int, ...], full_batch: bool, slots
    ):
        self.graphdef, self.lora_graph, self.recipe = graphdef, lora_graph, recipe
        self.fresh_rows, self.full_batch, self.slots = fresh_rows, full_batch, slots
        self._key = (graphdef, lora_graph, recipe, fresh_rows, full_batch, slots)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Program) and self._key == other._key

    def model(self, trainable, frozen):
        return _merged(self.graphdef, trainable, frozen, self.lora_graph, self.recipe)

    def member_step(self, trainable, opt, frozen, groups, data, key, lr_scale, step, fresh_rows):
        recipe = self.recipe
        if self.full_batch:
            tokens, targets = data["tokens"], data["targets"]
            valid = (jnp.arange(tokens.shape[0], dtype=I32) < data["n_fixed"]).astype(F32)
            weights = valid / jnp.maximum(valid.sum(), 1.0)
        else:
            tokens, targets = self._batch(key, step, data, fresh_rows)
            weights = jnp.full((tokens.shape[0],), 1.0 / tokens.shape[0], F32)
        loss, grads = jax.value_and_grad(lambda t: _loss(self.model(t, frozen), tokens, targets, weights))(
            trainable
        )
        factor = recipe.schedule_factor(step) * jnp.asarray(recipe.lr, F32) * lr_scale
        if recipe.optimizer == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            t = (step + 1).astype(F32)
            m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, opt["m"], grads)
            v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, opt["v"], grads)
            direction = jax.tree.map(lambda m, v: (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps), m, v)
            opt = {"m": m, "v": v}
        else:
            direction = grads
        wd = jnp.asarray(recipe.weight_decay, F32)
        trainable = jax.tree.map(lambda p, d, g: p - factor * g * (d + wd * p), trainable, direction, groups)
        return trainable, opt, loss

    def _batch(self, key, step, data, fresh_rows):
        # fresh_rows differs per member only in value; shapes are fixed by the largest (see finetune_members).
        batch_size = self.recipe.batch_size
        if len(set(self.fresh_rows)) == 1:
            return _batch(key, step, data, self.fresh_rows[0], batch_size)
        # Mixed layouts: draw a full batch of each kind and pick rows per member (cheap: token arithmetic).
        tok_fixed, tgt_fixed = _batch(key, step, data, 0, batch_size)
        tok_fresh, tgt_fresh = _batch(key, step, data, batch_size, batch_size)
        use_fresh = jnp.arange(batch_size, dtype=I32) >= batch_size - fresh_rows
        return (
            jnp.where(use_fresh[:, None], tok_fresh, tok_fixed),
            jnp.where(use_fresh, tgt_fresh, tgt_fixed),
        )

    @functools.partial(jax.jit, static_argnums=0)
    def advance(self, state, consts, n_steps):
        """``n_steps`` steps of every member (a traced count: compiles once for every interval)."""

        def body(_, state):
            trainable, opt, step, bad, loss_sum = state
            keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(consts["keys"])
            trainable, opt, loss = jax.vmap(self.member_step, in_axes=(0, 0, 0, None, 0, 0, 0, None, 0))(
                trainable,
                opt,
                consts["frozen"],
                consts["groups"],
                consts["data"],
                keys,
                consts["lr_scale"],
                step,
                consts["fresh_rows"],
            )
            bad = jnp.where((bad < 0) & ~jnp.isfinite(loss), step, bad)
            return trainable, opt, step + 1, bad, loss_sum + loss

        trainable, opt, step, bad, _ = state
        zero = jnp.zeros_like(state[4])
        trainable, opt, step, bad, loss_sum = jax.lax.fori_loop(
            0, n_steps, body, (trainable, opt, step, bad, zero)
        )
        return (trainable, opt, step, bad, loss_sum), loss_sum / jnp.maximum(n_steps, 1).astype(F32)

    @functools.partial(jax.jit, static_argnums=0)
    def measure(self, trainable, consts):
        return jax.vmap(self.member_measure)(trainable, consts["frozen"], consts["data"])

    def member_measure(self, trainable, frozen, data):
        model = self.model(trainable, frozen)

        def last(tokens):
            logits_BxLxV, att_NxBxHxLxL = model(tokens)
            return jax.nn.log_softmax(logits_BxLxV[:, -1], axis=-1), att_NxBxHxLxL

        pick = lambda lp, idx: jnp.take_along_axis(lp, idx[:, None], axis=1)[:, 0]
        argmax = lambda lp: jnp.argmax(lp, axis=-1).astype(I32)
        logp, att = last(data["cf_tokens"])
        lp_c, lp_a = pick(logp, data["cf_context"]), pick(logp, data["cf_memory"])
        recall_logp, _ = last(data["recall_tokens"])
        copy_logp, _ = last(data["copy_tokens"])
        fresh_logp, _ = last(data["fresh_tokens"])
        fixed_logp, _ = last(data["tokens"])
        fixed_nll = -pick(fixed_logp, data["targets"])
        valid = jnp.arange(data["tokens"].shape[0], dtype=I32) < data["n_fixed"]
        subject = data["cf_tokens"].shape[1] - 2
        out = {
            "context_reliance": jax.nn.sigmoid(lp_c - lp_a).mean(),
            "counterfactual_accuracy": (argmax(logp) == data["cf_context"]).astype(F32).mean(),
            "parametric_accuracy": (argmax(recall_logp) == data["cf_memory"]).astype(F32).mean(),
            "delta_m": jnp.exp(pick(recall_logp, data["cf_memory"])).mean(),
            "delta_c": jnp.exp(pick(copy_logp, data["copy_targets"])).mean(),
            "attention_context": att[:, :, :, -1, jnp.asarray(self.slots)].sum(axis=-1).mean(axis=(1, 2)),
            "attention_subject": att[:, :, :, -1, subject].mean(axis=(1, 2)),
            "loss_fresh": -pick(fresh_logp, data["fresh_targets"]).mean(),
        }
        for i, data_class in enumerate(FINETUNE_CLASSES):
            mask = (valid & (data["classes"] == i)).astype(F32)
            count = mask.sum()
            out[_CLASS_KEYS[data_class]] = jnp.where(
                count > 0, (fixed_nll * mask).sum() / jnp.maximum(count, 1.0), jnp.asarray(jnp.nan, F32)
            )
        return out


_CLASS_KEYS = {
    DataClass.CONTEXT_CRITICAL: "loss_c",
    DataClass.NON_CONTEXT_CRITICAL: "loss_cs",
    DataClass.SUBJECT_ONLY: "loss_s",
}


def finetune_members(models, members, recipe: Recipe, seeds=None, progress=None) -> list[dict]:
    """Finetune each ``models[i]`` on ``members[i]`` under ``recipe``, all members in one vmapped program.

    Models must share their configuration but for the seed, and members their shapes (fixed points per
    world, probes). ``seeds`` (one int per member, default 0, 1, ...) seed each member's minibatches, fresh
    C points and LoRA initialization, so a member draws the same data alone or with others. Returns one
    trajectory per member: ``step`` and every measurement (arrays, one entry
    per measured step, step 0 included), ``train_loss`` (mean loss over each interval), ``diverged_step``
    (first step with a non-finite loss, or None).
    """
    if len(models) != len(members) or not members:
        raise ConfigError("members", "need one model per member, and at least one")
    configs = {dataclasses.replace(m.config, seed=0) for m in models}
    if len(configs) != 1:
        raise ConfigError("models", "members trained together must share one model configuration")
    worlds = [m.world for m in members]
    if len({(w.config.seq_len, w.config.vocab_size, _n_fixed(w)) for w in worlds}) != 1:
        raise ConfigError("members", "members trained together need worlds of one shape (vocabulary, points)")
    full_batch = recipe.batch_size is None
    if full_batch and any(m.fresh_share for m in members):
        raise ConfigError("batch_size", "fresh C points need minibatches (batch_size), not the full batch")
    if full_batch and not _n_fixed(worlds[0]):
        raise ConfigError("batch_size", "a full batch needs fixed finetuning points")
    fresh_rows = tuple(0 if full_batch else int(round(m.fresh_share * recipe.batch_size)) for m in members)
    if not full_batch and any(
        r < recipe.batch_size and not _n_fixed(m.world) for r, m in zip(fresh_rows, members, strict=True)
    ):
        raise ConfigError("fresh_share", "a minibatch with fixed rows needs fixed finetuning points")

    seeds = list(range(len(members))) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(members):
        raise ConfigError("seeds", "need one seed per member")
    splits = [_split(model, recipe, s) for s, model in zip(seeds, models, strict=True)]
    graphdef, _, _, lora_graph = splits[0]
    trainable = _stack([s[1] for s in splits])
    frozen = _stack([s[2] for s in splits])
    groups = _group_tree(splits[0][1], recipe)
    opt = (
        {"m": jax.tree.map(jnp.zeros_like, trainable), "v": jax.tree.map(jnp.zeros_like, trainable)}
        if recipe.optimizer == "adam"
        else {}
    )
    per_member = [_member_data(m) for m in members]
    data = {k: jnp.asarray(np.stack([d[k] for d in per_member])) for k in per_member[0]}
    consts = {
        "frozen": frozen,
        "groups": groups,
        "data": data,
        "keys": jnp.stack([jax.random.key(s) for s in seeds]),
        "lr_scale": jnp.asarray([m.lr_scale for m in members], F32),
        "fresh_rows": jnp.asarray(fresh_rows, I32),
    }
    program = _Program(
        graphdef, lora_graph, recipe, fresh_rows, full_batch, tuple(worlds[0].config.context_slots)
    )
    n = len(members)
    state = (trainable, opt, jnp.asarray(0, I32), jnp.full((n,), -1, I32), jnp.zeros((n,), F32))
    steps = recipe.measure_steps()
    records = [jax.device_get(program.measure(state[0], consts))]
    losses = []
    done = 0
    for target in steps[1:]:
        state, mean_loss = program.advance(state, consts, jnp.asarray(int(target - done), I32))
        done = int(target)
        records.append(jax.device_get(program.measure(state[0], consts)))
        losses.append(np.asarray(mean_loss))
        if progress is not None:
            progress(done, recipe.steps)
    bad = np.asarray(state[3])
    out = []
    for i in range(n):
        trajectory = {"step": steps.astype(np.int64)}
        for key in records[0]:
            trajectory[key] = np.stack([np.asarray(r[key][i]) for r in records])
        trajectory["train_loss"] = np.asarray([loss[i] for loss in losses])
        trajectory["diverged_step"] = int(bad[i]) if bad[i] >= 0 else None
        out.append(trajectory)
    return out
