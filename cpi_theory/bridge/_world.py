"""A synthetic fact world: subjects, relations and answers as tokens, and the data built from them.

Every sequence has one template, so all examples share a length and the answer is read at the last position:

    [CTX, slot_1 .. slot_m, Q, s, R]  ->  answer

``m = 1 + n_distractors`` context slots. Context QA puts the context answer token in one slot (the others hold
distractor tokens); fact recall fills every slot with NONE (no context). This mirrors the toy's ``[c, s, r]``
and ``[s, r]`` inputs, with the context span at a known place so attention on it can be measured.

Subject pools (disjoint):
- known facts, memorized in pretraining: the first ``n_probe`` are the held-out counterfactual probes, the
  rest feed the finetuning C+S and S points;
- unknown subjects for pretraining copy examples, for finetuning C points, and for the delta_C probe;
- (round two, issue 22) a pool of *stream* subjects for fresh C points: a new subject and context per
  finetuning row, never used for facts, so those C points cannot be memorized by subject.

Round two also splits the answers (``n_context_answers`` > 0): the first ``n_answers - n_context_answers``
are *fact answers* (memorized facts, the counterfactual contexts c*, the delta_C probe), the rest are used
only as the contexts of fixed C points, as in the toy where C contexts are nobody's memorized answer.
``cs_as_c`` is the frequency-matched control: every C+S point keeps its context (= target) token and gets
an unknown subject instead of its known one, so the arms differ only in whether the subject knows the answer.
"""

import dataclasses

import numpy as np

from .._errors import ConfigError
from ..config._data_class import DataClass

# Special tokens; distractors, subjects and answers follow in that order.
PAD, CTX, QUESTION, RELATION, NONE = 0, 1, 2, 3, 4
N_SPECIAL = 5

#: The classes of a finetuning mixture, in the order :meth:`FactWorld.finetune_set` concatenates them.
FINETUNE_CLASSES = (DataClass.CONTEXT_CRITICAL, DataClass.NON_CONTEXT_CRITICAL, DataClass.SUBJECT_ONLY)


@dataclasses.dataclass(frozen=True)
class FactWorldConfig:
    """The fact world and both data mixtures. Rates and fractions are probabilities in [0, 1]."""

    n_answers: int = 64
    n_known_facts: int = 256  # memorized in pretraining (includes the probes)
    n_probe: int = 64  # held-out memorized facts used for counterfactual probes (never finetuned on)
    n_copy_subjects: int = 256  # unknown subjects seen in pretraining copy examples
    n_distractors: int = 0  # distractor tokens in the context span besides the context answer
    n_distractor_vocab: int = 16
    # Pretraining mixture: the rest of each batch is closed-book fact recall on known subjects.
    copy_rate: float = 0.0  # context-copy examples on unknown subjects
    agree_rate: float = 0.0  # known subjects whose context agrees with memory
    # Label noise sets the strengths the model converges to: recall targets are a random other answer with
    # probability fact_noise (so p(fact) -> ~1 - fact_noise), copy targets with probability copy_noise.
    fact_noise: float = 0.0
    copy_noise: float = 0.0
    # Finetuning mixture.
    n_finetune: int = 64
    cs_fraction: float = 0.5  # context-redundant (C+S) share
    s_fraction: float = 0.0  # subject-only (S) share; context-critical (C) takes the rest
    filter_cs: bool = False  # the filtering mitigation: drop the C+S points of this mixture
    # Round two (issue 22); the defaults give the round-one world unchanged.
    n_context_answers: int = 0  # the last answers: contexts of fixed C points only (0: no split)
    n_stream_subjects: int = 0  # pool of never-memorized subjects for fresh C points
    cs_as_c: bool = False  # frequency-matched control: C+S points get unknown subjects, same contexts
    seed: int = 0

    def __post_init__(self):
        for key in ("n_answers", "n_known_facts", "n_probe", "n_finetune", "n_distractor_vocab"):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be a positive integer, got {getattr(self, key)}")
        for key in ("n_copy_subjects", "n_distractors", "n_context_answers", "n_stream_subjects"):
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("copy_rate", "agree_rate", "fact_noise", "copy_noise", "cs_fraction", "s_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(key, f"must lie in [0, 1], got {value}")
        if self.copy_rate + self.agree_rate > 1.0:
            raise ConfigError("agree_rate", "copy_rate + agree_rate must be <= 1")
        if self.cs_fraction + self.s_fraction > 1.0:
            raise ConfigError("s_fraction", "cs_fraction + s_fraction must be <= 1")
        if self.n_answers < 2:
            raise ConfigError(
                "n_answers", "needs at least 2 answers (a counterfactual differs from the fact)"
            )
        if self.n_fact_answers < 2:
            raise ConfigError(
                "n_context_answers",
                f"must leave at least 2 fact answers (n_answers - n_context_answers), got {self.n_fact_answers}",
            )
        counts = self.class_counts
        n_c, n_cs, n_s = (counts[data_class] for data_class in FINETUNE_CLASSES)
        if self.cs_as_c and self.filter_cs:
            raise ConfigError("cs_as_c", "the matched control replaces the C+S points; filter_cs drops them")
        if n_cs + n_s > self.n_known_facts - self.n_probe:
            raise ConfigError(
                "n_known_facts",
                f"must be >= n_probe + C+S + S points = {self.n_probe + n_cs + n_s}, got {self.n_known_facts}",
            )
        if self.filter_cs and n_c + n_s == 0:
            raise ConfigError("filter_cs", "filtering the C+S points would leave no finetuning data")
        if self.copy_rate > 0 and self.n_copy_subjects < 1:
            raise ConfigError("n_copy_subjects", "copy_rate > 0 needs at least one copy subject")

    @property
    def class_counts(self) -> dict[DataClass, int]:
        """Point count per class of the unfiltered mixture: fractions rounded, C takes the remainder."""
        n_cs = int(round(self.cs_fraction * self.n_finetune))
        n_s = int(round(self.s_fraction * self.n_finetune))
        return {
            DataClass.CONTEXT_CRITICAL: self.n_finetune - n_cs - n_s,
            DataClass.NON_CONTEXT_CRITICAL: n_cs,
            DataClass.SUBJECT_ONLY: n_s,
        }

    @property
    def n_fact_answers(self) -> int:
        """Answers that facts (and counterfactual contexts) use: all but the context-only ones."""
        return self.n_answers - self.n_context_answers

    @property
    def seq_len(self) -> int:
        return self.n_distractors + 5

    @property
    def n_subjects(self) -> int:
        # The C pool has room for an all-C mixture, so the vocabulary (and the model) is the same for every
        # mixture of one world: finetuning runs on different mixtures start from one pretrained checkpoint.
        # The matched control (cs_as_c) takes its unknown subjects from the same C pool.
        return (
            self.n_known_facts
            + self.n_copy_subjects
            + self.n_finetune
            + self.n_probe
            + self.n_stream_subjects
        )

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL + self.n_distractor_vocab + self.n_subjects + self.n_answers

    @property
    def context_slots(self) -> tuple[int, ...]:
        """Positions of the context span (the tokens whose attention mass is measured)."""
        return tuple(range(1, 2 + self.n_distractors))


@dataclasses.dataclass(frozen=True)
class Examples:
    """A set of sequences with their targets. ``tokens`` is (n, L) int32, ``targets`` (n,) int32."""

    tokens: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclasses.dataclass(frozen=True)
class FactWorld:
    """Token ids of every pool, the memorized facts and the probe sets (all numpy, int32).

    Not the toy's :class:`cpi_theory.World` (embeddings and data points of the one-layer model): this is
    the token-level world a real transformer is trained on.
    """

    config: FactWorldConfig
    known_subjects: np.ndarray  # (n_known_facts,)
    known_answers: np.ndarray  # (n_known_facts,) the memorized answer of each known subject
    copy_subjects: np.ndarray
    finetune_unknown_subjects: np.ndarray  # subjects of the C points
    probe_unknown_subjects: np.ndarray  # held-out unknown subjects for the delta_C probe
    counterfactual_contexts: np.ndarray  # (n_probe,) conflicting context per probe fact, != its answer
    copy_probe_contexts: np.ndarray  # (n_probe,) context answer per unknown probe subject
    finetune: dict[DataClass, Examples]  # the FINETUNE_CLASSES, in that order
    stream_subjects: np.ndarray  # (n_stream_subjects,) subjects of fresh C points
    fact_answer_ids: np.ndarray  # token ids of the fact answers
    context_answer_ids: np.ndarray  # token ids usable as fixed C contexts (all answers without a split)

    @property
    def probe_subjects(self) -> np.ndarray:
        return self.known_subjects[: self.config.n_probe]

    @property
    def probe_answers(self) -> np.ndarray:
        return self.known_answers[: self.config.n_probe]

    def finetune_set(self) -> Examples:
        """All finetuning points concatenated (C, then C+S, then S)."""
        parts = [
            self.finetune[data_class] for data_class in FINETUNE_CLASSES if len(self.finetune[data_class])
        ]
        return Examples(np.concatenate([p.tokens for p in parts]), np.concatenate([p.targets for p in parts]))

    def counterfactual_probe(self) -> Examples:
        """Known probe facts with a conflicting context: target is the context answer c*."""
        rng = np.random.default_rng([self.config.seed, 7])
        tokens = sequences(self.config, self.probe_subjects, self.counterfactual_contexts, rng)
        return Examples(tokens, self.counterfactual_contexts.copy())

    def recall_probe(self) -> Examples:
        """Known probe facts without context: target is the memorized answer (measures delta_M)."""
        tokens = sequences(self.config, self.probe_subjects, None, None)
        return Examples(tokens, self.probe_answers.copy())

    def copy_probe(self) -> Examples:
        """Held-out unknown subjects with a context: target is the context answer (measures delta_C)."""
        rng = np.random.default_rng([self.config.seed, 8])
        tokens = sequences(self.config, self.probe_unknown_subjects, self.copy_probe_contexts, rng)
        return Examples(tokens, self.copy_probe_contexts.copy())


def sequences(
    config: FactWorldConfig,
    subjects: np.ndarray,
    contexts: np.ndarray | None,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Build ``[CTX, slots, Q, s, R]`` rows; ``contexts=None`` gives fact recall (every slot NONE)."""
    n = subjects.shape[0]
    n_slots = config.n_distractors + 1
    slots = np.full((n, n_slots), NONE, dtype=np.int32)
    if contexts is not None:
        if config.n_distractors:
            slots = rng.integers(N_SPECIAL, N_SPECIAL + config.n_distractor_vocab, size=(n, n_slots))
            slots = slots.astype(np.int32)
            where = rng.integers(0, n_slots, size=n)
        else:
            where = np.zeros(n, dtype=np.int64)
        slots[np.arange(n), where] = contexts
    head = np.full((n, 1), CTX, dtype=np.int32)
    tail = np.stack(
        [
            np.full(n, QUESTION, dtype=np.int32),
            subjects.astype(np.int32),
            np.full(n, RELATION, dtype=np.int32),
        ],
        axis=1,
    )
    return np.concatenate([head, slots, tail], axis=1).astype(np.int32)


def _other_answer(rng: np.random.Generator, n_answers: int, avoid: np.ndarray) -> np.ndarray:
    """One answer index per entry of ``avoid``, uniformly among the others."""
    shift = rng.integers(1, n_answers, size=avoid.shape[0])
    return (avoid + shift) % n_answers


def make_fact_world(config: FactWorldConfig) -> FactWorld:
    """Draw the world deterministically from ``config.seed``.

    Facts, probes and pools depend only on the seed and the pool sizes, never on the mixture fractions: two
    mixtures of one seed share their facts, probes and pretraining corpus, and differ only in finetuning.
    """
    rng = np.random.default_rng([config.seed, 1])
    first_subject = N_SPECIAL + config.n_distractor_vocab
    first_answer = first_subject + config.n_subjects
    subject_ids = first_subject + rng.permutation(config.n_subjects)
    counts = config.class_counts
    n_c, n_cs, n_s = (counts[data_class] for data_class in FINETUNE_CLASSES)
    cuts = np.cumsum([config.n_known_facts, config.n_copy_subjects, config.n_finetune, config.n_probe])
    known, copy, ft_unknown, probe_unknown, stream = np.split(subject_ids, cuts)
    # The matched control's unknown subjects come after the C points' in the same pool (room: n_finetune).
    cs_unknown = ft_unknown[n_c : n_c + n_cs]
    ft_unknown = ft_unknown[:n_c]

    n_fact = config.n_fact_answers
    answer_idx = rng.integers(0, n_fact, size=config.n_known_facts)
    counterfactual_idx = _other_answer(rng, n_fact, answer_idx[: config.n_probe])
    copy_probe_idx = rng.integers(0, n_fact, size=config.n_probe)
    if config.n_context_answers:
        c_context_idx = n_fact + rng.integers(0, config.n_context_answers, size=config.n_finetune)[:n_c]
    else:
        c_context_idx = rng.integers(0, config.n_answers, size=config.n_finetune)[:n_c]
    known_answers = (first_answer + answer_idx).astype(np.int32)

    # Finetuning points use non-probe known facts: C+S first, then S, on distinct subjects.
    ft_known = np.arange(config.n_probe, config.n_probe + n_cs + n_s)
    cs_rows, s_rows = ft_known[:n_cs], ft_known[n_cs:]
    ft_rng = np.random.default_rng([config.seed, 2])
    c_contexts = (first_answer + c_context_idx).astype(np.int32)
    cs = DataClass.NON_CONTEXT_CRITICAL
    c_points = Examples(sequences(config, ft_unknown, c_contexts, ft_rng), c_contexts)
    cs_subjects = cs_unknown if config.cs_as_c else known[cs_rows]
    cs_points = Examples(
        sequences(config, cs_subjects, known_answers[cs_rows], ft_rng), known_answers[cs_rows].copy()
    )
    if config.cs_as_c:  # the control: those points are C points now (unknown subjects, same contexts)
        c_points = Examples(
            np.concatenate([c_points.tokens, cs_points.tokens]),
            np.concatenate([c_points.targets, cs_points.targets]),
        )
        cs_points = Examples(cs_points.tokens[:0], cs_points.targets[:0])
    finetune = {
        DataClass.CONTEXT_CRITICAL: c_points,
        cs: cs_points,
        DataClass.SUBJECT_ONLY: Examples(
            sequences(config, known[s_rows], None, None), known_answers[s_rows].copy()
        ),
    }
    if config.filter_cs:
        finetune[cs] = Examples(finetune[cs].tokens[:0], finetune[cs].targets[:0])
    answer_ids = np.arange(first_answer, first_answer + config.n_answers, dtype=np.int32)
    return FactWorld(
        config=config,
        known_subjects=known.astype(np.int32),
        known_answers=known_answers,
        copy_subjects=copy.astype(np.int32),
        finetune_unknown_subjects=ft_unknown.astype(np.int32),
        probe_unknown_subjects=probe_unknown.astype(np.int32),
        counterfactual_contexts=(first_answer + counterfactual_idx).astype(np.int32),
        copy_probe_contexts=(first_answer + copy_probe_idx).astype(np.int32),
        finetune=finetune,
        stream_subjects=stream.astype(np.int32),
        fact_answer_ids=answer_ids[:n_fact],
        context_answer_ids=answer_ids[n_fact:] if config.n_context_answers else answer_ids,
    )


def pretraining_batch(fact_world: FactWorld, rng: np.random.Generator, batch_size: int) -> Examples:
    """One pretraining batch: fact recall, copy examples on unknown subjects, and agreeing contexts.

    Each row picks its kind with probabilities (1 - copy_rate - agree_rate, copy_rate, agree_rate); copy
    contexts are fresh random answers, so the model learns copying as a skill rather than memorizing pairs.
    Label noise (``fact_noise`` on recall, ``copy_noise`` on copy rows) replaces the target by a random other
    answer; the context token itself is never changed, so a noisy copy row still shows the true context.
    """
    config = fact_world.config
    kind = rng.choice(
        3,
        size=batch_size,
        p=[1.0 - config.copy_rate - config.agree_rate, config.copy_rate, config.agree_rate],
    )
    fact_rows = rng.integers(0, config.n_known_facts, size=batch_size)
    first_answer = config.vocab_size - config.n_answers
    subjects = fact_world.known_subjects[fact_rows].copy()
    targets = fact_world.known_answers[fact_rows].copy()
    is_copy = kind == 1
    if is_copy.any():
        subjects[is_copy] = rng.choice(fact_world.copy_subjects, size=int(is_copy.sum()))
        targets[is_copy] = first_answer + rng.integers(0, config.n_answers, size=int(is_copy.sum()))
    has_context = kind > 0
    tokens = sequences(config, subjects, None, None)
    if has_context.any():
        tokens[has_context] = sequences(config, subjects[has_context], targets[has_context], rng)
    noise = np.where(kind == 0, config.fact_noise, np.where(is_copy, config.copy_noise, 0.0))
    flip = rng.random(batch_size) < noise
    if flip.any():
        if config.n_context_answers:
            # A noisy fact keeps to the fact answers (context-only answers are never anyone's memory); a
            # noisy copy row may name any answer.
            flip_fact, flip_copy = flip & (kind == 0), flip & is_copy
            targets[flip_fact] = first_answer + _other_answer(
                rng, config.n_fact_answers, targets[flip_fact] - first_answer
            )
            targets[flip_copy] = first_answer + _other_answer(
                rng, config.n_answers, targets[flip_copy] - first_answer
            )
        else:
            targets[flip] = first_answer + _other_answer(rng, config.n_answers, targets[flip] - first_answer)
    return Examples(tokens, targets.astype(np.int32))
