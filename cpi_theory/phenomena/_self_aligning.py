"""Learning or self-aligning (Ren et al., SPEC.md §7) in the toy model: finetuning on closed-book facts.

Every subject has memorized a true answer with a graded strength, plus a competing wrong answer; for a
fraction of subjects the wrong answer is the stronger one, so the pretrained model's own answer (its
argmax) can be wrong. Some subjects are finetuned ([s, r] -> target, W_V trained); the others are held out
and their answer distributions compared before and after.

Target kinds for the finetuned subjects:
- ``harmonious``: the true (memorized) answer;
- ``incompatible``: an answer the model does not associate with the subject (new, conflicting knowledge);
- ``self_aligning``: the pretrained model's own argmax answer (wrong where the distractor is stronger).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..config._data_class import DataClass
from ..model._forward import forward
from ..model._world import Vocabulary, World, make_world, value_table
from ._batch import kl_divergence, rank_correlation

TARGET_KINDS = ("harmonious", "incompatible", "self_aligning")
_SUBJECT_ONLY = DataClass.SUBJECT_ONLY.index


@dataclasses.dataclass(frozen=True)
class FactBank:
    """Pretrained facts of one seed: per subject a true answer and a distractor, with strengths.

    Answer indices are 0-based within the answer block (token id = ``vocab.answer(j)``); subjects
    ``0 .. n_finetune-1`` are finetuned, the rest held out.
    """

    vocab: Vocabulary
    n_finetune: int
    true_answer: np.ndarray
    true_strength: np.ndarray
    wrong_answer: np.ndarray
    wrong_strength: np.ndarray
    table: np.ndarray

    @property
    def n_subjects(self) -> int:
        return self.true_answer.shape[0]


def fact_bank(
    seed: int,
    *,
    n_finetune: int,
    n_held_out: int,
    n_answers: int,
    strength_range: tuple[float, float],
    wrong_fraction: float,
    o_c: float = 0.0,
    o_r: float = 0.0,
) -> FactBank:
    """Draw graded facts with ``numpy.random.default_rng(seed)``.

    True strengths (delta_M per fact) are uniform on ``strength_range``. Each subject also has a distractor
    answer: with probability ``wrong_fraction`` its strength is above the true one (the pretrained answer is
    wrong), otherwise below. Answers may repeat across subjects (like real facts sharing an answer).
    """
    lo, hi = strength_range
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"strength_range must satisfy 0 < lo < hi < 1, got {strength_range}")
    if not 0.0 <= wrong_fraction <= 1.0:
        raise ValueError(f"wrong_fraction must lie in [0, 1], got {wrong_fraction}")
    if n_answers < 3:
        raise ValueError(f"n_answers must be >= 3, got {n_answers}")
    rng = np.random.default_rng(seed)
    n = n_finetune + n_held_out
    true_answer = rng.integers(0, n_answers, size=n)
    # A distractor different from the true answer.
    wrong_answer = (true_answer + rng.integers(1, n_answers, size=n)) % n_answers
    true_strength = rng.uniform(lo, hi, size=n)
    stronger = rng.uniform(size=n) < wrong_fraction
    # Stronger distractor: between the true strength and hi; weaker: between lo/2 and the true strength.
    frac = rng.uniform(0.2, 0.8, size=n)
    wrong_strength = np.where(
        stronger, true_strength + frac * (hi - true_strength), lo / 2 + frac * (true_strength - lo / 2)
    )
    vocab = Vocabulary(n_subjects=n + 1, n_answers=n_answers)
    subjects = np.arange(n)
    table = value_table(
        vocab,
        o_c=o_c,
        o_r=o_r,
        self_copy_tokens=np.zeros(0, dtype=np.int64),
        self_copy_strength=np.zeros(0),
        fact_subjects=np.concatenate([subjects, subjects]),
        fact_answers=vocab.answer(np.concatenate([true_answer, wrong_answer])),
        fact_strength=np.concatenate([true_strength, wrong_strength]),
    )
    return FactBank(vocab, n_finetune, true_answer, true_strength, wrong_answer, wrong_strength, table)


def answer_distributions(state, world: World, vocab: Vocabulary, subjects) -> Float[Array, "n K_A"]:
    """The model's closed-book ([s, r]) distribution over the answer tokens, one row per subject."""
    subjects = jnp.asarray(np.asarray(subjects), dtype=jnp.int32)
    no_context = jnp.zeros(subjects.shape, dtype=bool)
    logits, _ = forward(state, world, jnp.full_like(subjects, world.relation), subjects, no_context)
    answers = vocab.answer(np.arange(vocab.n_answers))
    return jax.nn.softmax(logits[:, answers], axis=-1)


def finetuning_targets(bank: FactBank, pretrained_argmax: np.ndarray, kinds, seed: int) -> np.ndarray:
    """Target answer (0-based) per finetuned subject; ``kinds`` gives each subject's target kind."""
    rng = np.random.default_rng(seed)
    k = bank.n_finetune
    n_answers = bank.vocab.n_answers
    targets = np.empty(k, dtype=np.int64)
    for i, kind in enumerate(kinds):
        if kind == "harmonious":
            targets[i] = bank.true_answer[i]
        elif kind == "self_aligning":
            targets[i] = pretrained_argmax[i]
        elif kind == "incompatible":
            known = {int(bank.true_answer[i]), int(bank.wrong_answer[i])}
            choices = np.array([a for a in range(n_answers) if a not in known])
            targets[i] = rng.choice(choices)
        else:
            raise ValueError(f"unknown target kind {kind!r} (expected one of {TARGET_KINDS})")
    return targets


def mixture_kinds(n: int, incompatible_ratio: float) -> list[str]:
    """The first round(ratio * n) subjects incompatible, the rest self-aligning."""
    if not 0.0 <= incompatible_ratio <= 1.0:
        raise ValueError(f"incompatible_ratio must lie in [0, 1], got {incompatible_ratio}")
    n_incompatible = int(round(incompatible_ratio * n))
    return ["incompatible"] * n_incompatible + ["self_aligning"] * (n - n_incompatible)


def finetuning_world(bank: FactBank, targets) -> World:
    """Closed-book finetuning points [s_i, r] -> target_i for the finetuned subjects."""
    vocab = bank.vocab
    k = bank.n_finetune
    relation = vocab.relation
    probe_subject = bank.n_subjects  # an extra, unmemorized subject: the counterfactual probe is unused here
    return make_world(
        vocab,
        bank.table,
        context=np.full(k, relation),
        subject=np.arange(k),
        target=vocab.answer(np.asarray(targets)),
        has_context=np.zeros(k, dtype=bool),
        data_class=np.full(k, _SUBJECT_ONLY),
        probe=(vocab.answer(0), probe_subject, vocab.answer(1)),
    )


def consistency_report(bank: FactBank, pre, post) -> dict[str, float]:
    """Held-out accuracy before/after, and knowledge consistency between pre and post distributions.

    ``pre``, ``post``: answer distributions of the held-out subjects (rows in held-out order). KL is
    KL(pre || post) per fact, averaged.
    """
    truth = bank.true_answer[bank.n_finetune :]
    return {
        "accuracy_pre": float(np.mean(np.argmax(pre, axis=-1) == truth)),
        "accuracy_post": float(np.mean(np.argmax(post, axis=-1) == truth)),
        # Pooled over all (held-out fact, answer) pairs: does finetuning keep the ranking of what the
        # model believes, across facts and answers? (Per-fact rankings are mostly ties before finetuning.)
        "rank_correlation": float(rank_correlation(np.ravel(pre), np.ravel(post))[0]),
        "kl": float(np.mean(kl_divergence(pre, post))),
        "true_probability_change": float(
            np.mean(post[np.arange(truth.size), truth] - pre[np.arange(truth.size), truth])
        ),
    }
