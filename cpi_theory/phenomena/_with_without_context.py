"""Instruction tuning with and without context (Lee et al., SPEC.md §7) in the toy model.

New facts (s_i, a_i) that the pretrained model does not know (their subjects' value rows are uniform) are
trained either with context ``[a_i, s_i, r] -> a_i`` or without ``[s_i, r] -> a_i``, or a weighted mix.
W_V must be trained (``lr_v > 0``) for anything to be memorized. The test suite asks, for every new fact:
closed-book ``[s_i, r]`` (answer a_i), with its context ``[a_i, s_i, r]`` (answer a_i), and with a
counterfactual context ``[c'_i, s_i, r]`` (answer c'_i: follow the context). The pretrained counterfactual
probe ``[c*, s*, r]`` (s* memorized a*) is kept as in the main experiments.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..config._data_class import DataClass
from ..model._forward import forward, value_logits
from ..model._world import Vocabulary, World, make_world, value_table

_WITH_CONTEXT = DataClass.CONTEXT_CRITICAL.index
_WITHOUT_CONTEXT = DataClass.SUBJECT_ONLY.index
QUERY_TYPES = ("closed_book", "context", "counterfactual")
SUITE_METRICS = (
    "closed_book_accuracy",
    "context_accuracy",
    "counterfactual_accuracy",
    "closed_book_probability",
    "context_probability",
    "counterfactual_probability",
    "counterfactual_reliance",
    "attention_context",
    "memorized_probability",
)


@dataclasses.dataclass(frozen=True)
class NewFacts:
    """Token ids of the new facts: subjects, answers and counterfactual contexts (one each per fact)."""

    vocab: Vocabulary
    subjects: np.ndarray
    answers: np.ndarray
    counterfactual_contexts: np.ndarray
    table: np.ndarray
    probe: tuple[int, int, int]


def new_facts(
    n_facts: int, *, delta_c: float, delta_m: float, o_c: float = 0.0, o_r: float = 0.0
) -> NewFacts:
    """``n_facts`` unknown facts with distinct tokens; every context token self-copies with ``delta_c``;
    the probe subject s* has memorized a* with ``delta_m``."""
    if n_facts < 1:
        raise ValueError(f"n_facts must be >= 1, got {n_facts}")
    vocab = Vocabulary(n_subjects=n_facts + 1, n_answers=2 * n_facts + 2)
    subjects = np.arange(n_facts)
    answers = vocab.answer(np.arange(n_facts))
    counterfactual = vocab.answer(np.arange(n_facts, 2 * n_facts))
    c_star, a_star, s_star = vocab.answer(2 * n_facts), vocab.answer(2 * n_facts + 1), n_facts
    contexts = np.concatenate([answers, counterfactual, [c_star]])
    table = value_table(
        vocab,
        o_c=o_c,
        o_r=o_r,
        self_copy_tokens=contexts,
        self_copy_strength=np.full(contexts.shape, delta_c),
        fact_subjects=np.array([s_star]),
        fact_answers=np.array([a_star]),
        fact_strength=np.array([delta_m]),
    )
    return NewFacts(vocab, subjects, answers, counterfactual, table, (int(c_star), s_star, int(a_star)))


def context_mix_world(facts: NewFacts, context_fraction: float) -> World:
    """Each new fact once with context (weight ``f``) and once without (weight ``1 - f``)."""
    if not 0.0 <= context_fraction <= 1.0:
        raise ValueError(f"context_fraction must lie in [0, 1], got {context_fraction}")
    n = facts.subjects.shape[0]
    return make_world(
        facts.vocab,
        facts.table,
        context=np.concatenate([facts.answers, np.full(n, facts.vocab.relation)]),
        subject=np.concatenate([facts.subjects, facts.subjects]),
        target=np.concatenate([facts.answers, facts.answers]),
        has_context=np.concatenate([np.ones(n, bool), np.zeros(n, bool)]),
        data_class=np.concatenate([np.full(n, _WITH_CONTEXT), np.full(n, _WITHOUT_CONTEXT)]),
        weight=np.concatenate([np.full(n, context_fraction), np.full(n, 1.0 - context_fraction)]),
        probe=facts.probe,
    )


def suite_predictions(state, world: World, facts: NewFacts) -> dict[str, np.ndarray]:
    """Per-fact results of the three query types, for one model state."""
    subjects = jnp.asarray(facts.subjects, dtype=jnp.int32)
    answers = np.asarray(facts.answers)
    counterfactual = np.asarray(facts.counterfactual_contexts)
    n = subjects.shape[0]
    yes, no = jnp.ones(n, dtype=bool), jnp.zeros(n, dtype=bool)
    rows = np.arange(n)

    closed, _ = forward(state, world, jnp.full_like(subjects, world.relation), subjects, no)
    consistent, _ = forward(state, world, jnp.asarray(answers, dtype=jnp.int32), subjects, yes)
    counter, att = forward(state, world, jnp.asarray(counterfactual, dtype=jnp.int32), subjects, yes)
    closed, consistent, counter, att = (np.asarray(x) for x in (closed, consistent, counter, att))
    value = np.asarray(jax.nn.softmax(value_logits(state, world, subjects), axis=-1))
    prob = lambda logits, tokens: np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))[rows, tokens]
    return {
        # Probability of the right answer: accuracy saturates (an unknown subject's row is uniform, so
        # any gain for a_i makes it the argmax), the probability shows how well the fact is held.
        "closed_book_probability": prob(closed, answers),
        "context_probability": prob(consistent, answers),
        "counterfactual_probability": prob(counter, counterfactual),
        "closed_book_correct": np.argmax(closed, axis=-1) == answers,
        "context_correct": np.argmax(consistent, axis=-1) == answers,
        "counterfactual_correct": np.argmax(counter, axis=-1) == counterfactual,
        # M_C on the new fact: p(c') / (p(c') + p(a)) = sigmoid(z_c' - z_a).
        "counterfactual_reliance": 1.0
        / (1.0 + np.exp(counter[rows, answers] - counter[rows, counterfactual])),
        "attention_context": att[:, 0],
        # How much of the fact W_V holds: the probability v(s_i) alone puts on a_i.
        "memorized_probability": value[rows, answers],
    }


def suite_summary(predictions: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of :func:`suite_predictions` over facts, under the names of :data:`SUITE_METRICS`."""
    return {
        "closed_book_accuracy": float(np.mean(predictions["closed_book_correct"])),
        "context_accuracy": float(np.mean(predictions["context_correct"])),
        "counterfactual_accuracy": float(np.mean(predictions["counterfactual_correct"])),
        **{f"{q}_probability": float(np.mean(predictions[f"{q}_probability"])) for q in QUERY_TYPES},
        "counterfactual_reliance": float(np.mean(predictions["counterfactual_reliance"])),
        "attention_context": float(np.mean(predictions["attention_context"])),
        "memorized_probability": float(np.mean(predictions["memorized_probability"])),
    }


def routed_summary(with_context: dict[str, np.ndarray], without_context: dict[str, np.ndarray]):
    """The router: queries with context go to the context-trained model, closed-book queries to the
    context-free one. Takes two :func:`suite_predictions` results; returns the suite's accuracies."""
    out = {}
    for query, source in (
        ("closed_book", without_context),
        ("context", with_context),
        ("counterfactual", with_context),
    ):
        out[f"{query}_accuracy"] = float(np.mean(source[f"{query}_correct"]))
        out[f"{query}_probability"] = float(np.mean(source[f"{query}_probability"]))
    return out


def suite_score(summary: dict[str, float], kind: str = "probability") -> float:
    """Mean over the three query types (closed-book, with context, counterfactual context) of the
    ``accuracy`` or of the ``probability`` of the right answer."""
    if kind not in ("accuracy", "probability"):
        raise ValueError(f"kind must be 'accuracy' or 'probability', got {kind!r}")
    return float(np.mean([summary[f"{q}_{kind}"] for q in QUERY_TYPES]))
