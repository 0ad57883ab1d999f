"""Tokens, embeddings, pretrained knowledge (the value-logit table) and the data points (SPEC.md §1, §3, §4).

Token ids: subjects ``0 .. K_S-1``, answers ``K_S .. K_S+K_A-1``, the relation ``K-1``.
Basis of R^d (d = K_S + K_A + 3): coordinate ``i < K_S + K_A`` is the unique direction of token ``i``,
then ``theta_S``, ``theta_C`` and the relation direction ``e_r``.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .._errors import ConfigError
from .._precision import requires_float64
from ..config._config import Config
from ..config._data_class import DataClass
from ..config._params import ToyParams


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    n_subjects: int
    n_answers: int

    @property
    def n_tokens(self) -> int:
        """K = K_S + K_A + 1."""
        return self.n_subjects + self.n_answers + 1

    @property
    def dim(self) -> int:
        """d = K_S + K_A + 3."""
        return self.n_subjects + self.n_answers + 3

    def answer(self, j):
        """Token id of answer ``j`` (subjects are ``0 .. K_S-1``: their ids are their indices)."""
        return self.n_subjects + j

    @property
    def relation(self) -> int:
        return self.n_tokens - 1

    @property
    def theta_s(self) -> int:
        """Coordinate index of the shared subject direction."""
        return self.n_subjects + self.n_answers

    @property
    def theta_c(self) -> int:
        """Coordinate index of the shared answer/context direction."""
        return self.n_subjects + self.n_answers + 1

    @property
    def e_r(self) -> int:
        """Coordinate index of the relation direction."""
        return self.n_subjects + self.n_answers + 2


def embeddings(vocab: Vocabulary, dtype=jnp.float64) -> Float[np.ndarray, "d K"]:
    """Phi = [phi(1) ... phi(K)]: phi(s_i) = (s~_i + theta_S)/sqrt2, phi(c_j) = (c~_j + theta_C)/sqrt2, phi(r) = e_r."""
    phi = np.zeros((vocab.dim, vocab.n_tokens))
    half = np.sqrt(0.5)
    for i in range(vocab.n_subjects):
        phi[i, i] = half
        phi[vocab.theta_s, i] = half
    for j in range(vocab.n_answers):
        a = vocab.answer(j)
        phi[a, a] = half
        phi[vocab.theta_c, a] = half
    phi[vocab.e_r, vocab.relation] = 1.0
    return np.asarray(phi, dtype=dtype)


def logit(p):
    return np.log(p / (1.0 - p))


def value_table(
    vocab: Vocabulary,
    *,
    o_c: float,
    o_r: float,
    self_copy_tokens,
    self_copy_strength,
    fact_subjects,
    fact_answers,
    fact_strength,
) -> np.ndarray:
    """The pretrained value-logit table V[a, y] = phi(a)^T W_V(0) phi(y) (SPEC.md §3, paper Lemma 3).

    Answer rows hold ``o_c``, the relation row ``o_r``, subject rows 0. Then token ``c`` copies itself with
    probability ``self_copy_strength`` (delta_C) and subject ``s`` of a memorized fact votes for its answer
    with probability ``fact_strength`` (delta_M); both are turned into logits against the normaliser
    Z = (K_A - 1) e^{o_c} + e^{o_r} + K_S so that softmax(v(y)) puts exactly that probability on the target.
    Strengths may differ per token/fact (graded memorization).
    """
    k_s, k_a = vocab.n_subjects, vocab.n_answers
    table = np.zeros((vocab.n_tokens, vocab.n_tokens))
    table[k_s : k_s + k_a, :] = o_c
    table[vocab.relation, :] = o_r
    log_z = np.log((k_a - 1) * np.exp(o_c) + np.exp(o_r) + k_s)
    self_copy_tokens = np.asarray(self_copy_tokens, dtype=np.int64)
    fact_subjects = np.asarray(fact_subjects, dtype=np.int64)
    fact_answers = np.asarray(fact_answers, dtype=np.int64)
    table[self_copy_tokens, self_copy_tokens] = (
        logit(np.asarray(self_copy_strength, dtype=np.float64)) + log_z
    )
    table[fact_answers, fact_subjects] = logit(np.asarray(fact_strength, dtype=np.float64)) + log_z
    return table


def _dataclass_pytree(cls, meta=()):
    data = [f.name for f in dataclasses.fields(cls) if f.name not in meta]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(meta))


# Worlds are built on the host (NumPy) for sweep chunks and live on the device (jax.Array) in training.
HostOrDevice = Array | np.ndarray


@dataclasses.dataclass(frozen=True)
class World:
    """Everything fixed during finetuning: embeddings, pretrained value table, training points, test point.

    A pytree: its arrays are traced arguments of the trainer (vmap over worlds of equal shape works; a
    stacked world has leading ``batch`` axes; sweeps build it from NumPy arrays on the host).
    A training point is ``[c, s, r] -> target`` or, where ``has_context`` is False, ``[s, r] -> target``.
    ``weight`` multiplies each point's loss; the training loss is ``sum(weight * loss) / sum(weight)``.
    The probe is the counterfactual test point ``[c*, s*, r]`` whose subject memorized ``a*``.
    """

    embeddings: Float[HostOrDevice, "*batch d K"] | None  # None: shared by a sweep chunk, given apart
    value_table: Float[HostOrDevice, "*batch K K"]
    context: Int[HostOrDevice, "*batch n"]
    subject: Int[HostOrDevice, "*batch n"]
    target: Int[HostOrDevice, "*batch n"]
    has_context: Bool[HostOrDevice, "*batch n"]
    weight: Float[HostOrDevice, "*batch n"]
    data_class: Int[HostOrDevice, "*batch n"]
    probe_context: Int[HostOrDevice, "*batch"]
    probe_subject: Int[HostOrDevice, "*batch"]
    probe_memorized: Int[HostOrDevice, "*batch"]

    @property
    def relation(self) -> int:
        return self.embeddings.shape[1] - 1

    @property
    def n_points(self) -> int:
        return self.context.shape[0]


_dataclass_pytree(World)


@requires_float64
def make_world(
    vocab: Vocabulary,
    table: np.ndarray,
    *,
    context,
    subject,
    target,
    has_context,
    data_class,
    probe: tuple[int | np.integer, int | np.integer, int | np.integer],
    weight=None,
    dtype=jnp.float64,
) -> World:
    """Assemble a :class:`World` from token ids (``context`` is ignored where ``has_context`` is False)."""
    context = np.asarray(context, dtype=np.int64)
    has_context = np.asarray(has_context, dtype=bool)
    n = context.shape[0]
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    # Masked slots still index a valid token (the relation) so gathers stay in range.
    context = np.where(has_context, context, vocab.relation)
    probe_context, probe_subject, probe_memorized = probe
    return World(
        embeddings=jnp.asarray(embeddings(vocab), dtype=dtype),
        value_table=jnp.asarray(table, dtype=dtype),
        context=jnp.asarray(context, dtype=jnp.int32),
        subject=jnp.asarray(np.asarray(subject), dtype=jnp.int32),
        target=jnp.asarray(np.asarray(target), dtype=jnp.int32),
        has_context=jnp.asarray(has_context),
        weight=jnp.asarray(weight, dtype=dtype),
        data_class=jnp.asarray(np.asarray(data_class), dtype=jnp.int32),
        probe_context=jnp.asarray(probe_context, dtype=jnp.int32),
        probe_subject=jnp.asarray(probe_subject, dtype=jnp.int32),
        probe_memorized=jnp.asarray(probe_memorized, dtype=jnp.int32),
    )


@requires_float64
def build_world(config: Config, dtype=jnp.float64) -> World:
    """The world of a configuration (SPEC.md §3-4, §7), with distinct subjects and answers per point.

    Subjects, in order: C points, C+S points, S points, augmented points, then s*. Answers: C contexts,
    C+S facts (= their contexts), S facts, augmented contexts, augmented memorized answers, then c*, a*.
    Every token used as a context self-copies with delta_c; every memorized fact has strength delta_m.
    """
    if not config.has_integer_class_counts():
        raise ConfigError(
            "n_context_critical",
            "the full engine needs integer class counts; real class sizes (mixture weights) need "
            "engine='reduced'",
        )
    vocab = Vocabulary(config.n_subjects, config.n_answers)
    n_c, n_cs, n_s, n_aug = config.class_counts()
    subjects = iter(range(config.subjects_needed()))
    answers = iter(vocab.answer(j) for j in range(config.answers_needed()))
    take = lambda it, k: np.array([next(it) for _ in range(k)], dtype=np.int64)

    s_c, s_cs, s_s, s_aug, (s_star,) = (take(subjects, k) for k in (n_c, n_cs, n_s, n_aug, 1))
    a_c, a_cs, a_s, c_aug, a_aug = (take(answers, k) for k in (n_c, n_cs, n_s, n_aug, n_aug))
    c_star, a_star = take(answers, 2)

    contexts = np.concatenate([a_c, a_cs, c_aug, [c_star]])
    fact_subjects = np.concatenate([s_cs, s_s, s_aug, [s_star]])
    fact_answers = np.concatenate([a_cs, a_s, a_aug, [a_star]])
    table = value_table(
        vocab,
        o_c=config.o_c,
        o_r=config.o_r,
        self_copy_tokens=contexts,
        self_copy_strength=np.full(contexts.shape, config.delta_c),
        fact_subjects=fact_subjects,
        fact_answers=fact_answers,
        fact_strength=np.full(fact_subjects.shape, config.delta_m),
    )
    no_context = np.full(n_s, vocab.relation)
    return make_world(
        vocab,
        table,
        context=np.concatenate([a_c, a_cs, no_context, c_aug]),
        subject=np.concatenate([s_c, s_cs, s_s, s_aug]),
        target=np.concatenate([a_c, a_cs, a_s, c_aug]),
        has_context=np.concatenate([np.ones(n_c + n_cs, bool), np.zeros(n_s, bool), np.ones(n_aug, bool)]),
        data_class=np.repeat(np.arange(len(DataClass)), [n_c, n_cs, n_s, n_aug]),
        probe=(c_star, s_star, a_star),
        dtype=dtype,
    )


def params_world(params: ToyParams, vocab: Vocabulary, n_points: int, embeddings_DxK=None) -> World:
    """:func:`build_world` in JAX, from one run's :class:`ToyParams` (traced numbers: jit and vmap it over
    the columns of a sweep chunk). ``vocab`` and ``n_points`` (the total of the class sizes) fix the shapes;
    the class sizes must be whole numbers summing to ``n_points`` (the full engine's rules). The same world
    as :func:`build_world`: every token at the same place, every table entry equal up to the last bit of
    ``log`` / ``exp`` (computed by XLA here, by NumPy there).

    Points come in DataClass order; point i has subject i, and answer i is its context (C, C+S, augmented)
    and its target; the S points' context slot holds the relation. Augmented point j's memorized answer is
    answer n + j, then come c* = answer n + n_AUG and a* = answer n + n_AUG + 1; s* is subject n.
    """
    n = n_points
    sizes = params.class_sizes
    counts = [
        jnp.asarray(sizes.of(data_class), dtype=jnp.float64).astype(jnp.int32) for data_class in DataClass
    ]
    bounds = jnp.cumsum(jnp.stack(counts))  # class k holds the points [bounds[k-1], bounds[k])
    point = jnp.arange(n, dtype=jnp.int32)
    data_class = jnp.searchsorted(bounds, point, side="right").astype(jnp.int32)
    n_c, n_cs, n_s, n_aug = counts
    first_aug = n_c + n_cs + n_s
    answer = vocab.answer(point)
    has_context = data_class != DataClass.SUBJECT_ONLY.index
    is_aug = data_class == DataClass.COUNTERFACTUAL_AUGMENTED.index
    c_star, a_star = vocab.answer(n + n_aug), vocab.answer(n + n_aug + 1)

    o_c = jnp.asarray(params.o_c, dtype=jnp.float64)
    o_r = jnp.asarray(params.o_r, dtype=jnp.float64)
    k_s, k_a = vocab.n_subjects, vocab.n_answers
    log_z = jnp.log((k_a - 1) * jnp.exp(o_c) + jnp.exp(o_r) + k_s)

    def logit_(p):
        p = jnp.asarray(p, dtype=jnp.float64)
        return jnp.log(p / (1.0 - p))

    token = jnp.arange(vocab.n_tokens)
    is_answer = (token >= k_s) & (token < k_s + k_a)
    row = jnp.where(is_answer, o_c, jnp.where(token == vocab.relation, o_r, 0.0))
    table = jnp.broadcast_to(row[:, None], (vocab.n_tokens, vocab.n_tokens))
    # Self-copy: every token used as a context (C, C+S and augmented points, and c*) copies itself.
    copies = jnp.where(has_context, answer, vocab.relation)
    copy_value = logit_(params.delta_c) + log_z
    table = table.at[copies, copies].set(jnp.where(has_context, copy_value, table[copies, copies]))
    table = table.at[c_star, c_star].set(copy_value)
    # Facts: every C+S, S and augmented subject, and s*, memorized an answer.
    memorized = jnp.where(is_aug, vocab.answer(n + point - first_aug), answer)
    is_fact = data_class != DataClass.CONTEXT_CRITICAL.index
    fact_value = logit_(params.delta_m) + log_z
    rows, cols = jnp.where(is_fact, memorized, vocab.relation), jnp.where(is_fact, point, vocab.relation)
    table = table.at[rows, cols].set(jnp.where(is_fact, fact_value, table[rows, cols]))
    table = table.at[a_star, n].set(fact_value)
    if embeddings_DxK is None:
        embeddings_DxK = jnp.asarray(embeddings(vocab), dtype=jnp.float64)
    return World(
        embeddings=embeddings_DxK,
        value_table=table,
        context=jnp.where(has_context, answer, vocab.relation).astype(jnp.int32),
        subject=point,
        target=answer.astype(jnp.int32),
        has_context=has_context,
        weight=jnp.ones(n, dtype=jnp.float64),
        data_class=data_class,
        probe_context=jnp.asarray(c_star, dtype=jnp.int32),
        probe_subject=jnp.asarray(n, dtype=jnp.int32),
        probe_memorized=jnp.asarray(a_star, dtype=jnp.int32),
    )
