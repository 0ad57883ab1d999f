"""The bridge's synthetic fact world: determinism, fractions, and no counterfactual leakage."""

import numpy as np
import pytest

from cpi_theory import ConfigError
from cpi_theory.bridge import FactWorldConfig, make_fact_world, pretraining_batch
from cpi_theory.bridge._world import CTX, N_SPECIAL, NONE, QUESTION, RELATION
from cpi_theory.config import DataClass

C, CS, S = DataClass.CONTEXT_CRITICAL, DataClass.NON_CONTEXT_CRITICAL, DataClass.SUBJECT_ONLY

BASE = dict(
    n_answers=32,
    n_known_facts=96,
    n_probe=24,
    n_copy_subjects=64,
    n_finetune=40,
    n_distractors=2,
    copy_rate=0.3,
    agree_rate=0.2,
    fact_noise=0.2,
    copy_noise=0.3,
)


def _subject(tokens):
    return tokens[:, -2]


def _context_tokens(config, tokens):
    return tokens[:, 1 : 2 + config.n_distractors]


def test_same_seed_same_world_and_different_seed_differs():
    a, b = make_fact_world(FactWorldConfig(**BASE, seed=3)), make_fact_world(FactWorldConfig(**BASE, seed=3))
    c = make_fact_world(FactWorldConfig(**BASE, seed=4))
    np.testing.assert_array_equal(a.known_answers, b.known_answers)
    np.testing.assert_array_equal(a.finetune_set().tokens, b.finetune_set().tokens)
    batch_a = pretraining_batch(a, np.random.default_rng(0), 64)
    batch_b = pretraining_batch(b, np.random.default_rng(0), 64)
    np.testing.assert_array_equal(batch_a.tokens, batch_b.tokens)
    assert not np.array_equal(a.known_subjects, c.known_subjects)


@pytest.mark.parametrize("cs_fraction, s_fraction", [(0.0, 0.0), (0.25, 0.0), (0.5, 0.25), (0.75, 0.0)])
def test_fractions_are_honoured_and_classes_have_their_structure(cs_fraction, s_fraction):
    config = FactWorldConfig(**BASE, cs_fraction=cs_fraction, s_fraction=s_fraction)
    world = make_fact_world(config)
    counts = {k: len(v) for k, v in world.finetune.items()}
    assert list(counts) == [C, CS, S]
    assert counts[CS] == round(cs_fraction * config.n_finetune)
    assert counts[S] == round(s_fraction * config.n_finetune)
    assert sum(counts.values()) == config.n_finetune
    assert counts == config.class_counts
    fact = dict(zip(world.known_subjects.tolist(), world.known_answers.tolist(), strict=True))
    c, cs, s = world.finetune[C], world.finetune[CS], world.finetune[S]
    # C: unknown subjects, target = the context answer, which sits in the context span.
    assert not set(_subject(c.tokens).tolist()) & set(fact)
    assert all(t in row for t, row in zip(c.targets, _context_tokens(config, c.tokens), strict=True))
    # C+S: known subjects whose context is their memorized answer.
    assert all(
        fact[sub] == t for sub, t in zip(_subject(cs.tokens).tolist(), cs.targets.tolist(), strict=True)
    )
    assert all(t in row for t, row in zip(cs.targets, _context_tokens(config, cs.tokens), strict=True))
    # S: known subjects, no context at all.
    assert np.all(_context_tokens(config, s.tokens) == NONE)
    assert all(fact[sub] == t for sub, t in zip(_subject(s.tokens).tolist(), s.targets.tolist(), strict=True))
    # Every finetuning point uses a distinct subject, as in the toy.
    subjects = _subject(world.finetune_set().tokens)
    assert len(set(subjects.tolist())) == subjects.size


def test_counterfactual_facts_never_leak_into_training():
    config = FactWorldConfig(**BASE, cs_fraction=0.5, s_fraction=0.25)
    world = make_fact_world(config)
    probe = world.counterfactual_probe()
    assert np.all(world.counterfactual_contexts != world.probe_answers)  # the context really conflicts
    probe_subjects = set(world.probe_subjects.tolist())
    unknown_probe = set(world.probe_unknown_subjects.tolist())
    finetune = world.finetune_set()
    assert not probe_subjects & set(_subject(finetune.tokens).tolist())
    assert not unknown_probe & set(_subject(finetune.tokens).tolist())
    rng = np.random.default_rng(1)
    forbidden = set(zip(world.probe_subjects.tolist(), world.counterfactual_contexts.tolist(), strict=True))
    for _ in range(50):
        batch = pretraining_batch(world, rng, 256)
        subjects = _subject(batch.tokens).tolist()
        assert not unknown_probe & set(subjects)
        for sub, ctx_row in zip(subjects, _context_tokens(config, batch.tokens).tolist(), strict=True):
            assert not any((sub, c) in forbidden for c in ctx_row)
    # The probe sequences themselves have the template's fixed tokens.
    assert np.all(probe.tokens[:, 0] == CTX) and np.all(probe.tokens[:, -3] == QUESTION)
    assert np.all(probe.tokens[:, -1] == RELATION)


def test_mixtures_share_facts_probes_and_vocabulary():
    a = make_fact_world(FactWorldConfig(**BASE, cs_fraction=0.0))
    b = make_fact_world(FactWorldConfig(**BASE, cs_fraction=0.75))
    assert a.config.vocab_size == b.config.vocab_size
    np.testing.assert_array_equal(a.known_subjects, b.known_subjects)
    np.testing.assert_array_equal(a.known_answers, b.known_answers)
    np.testing.assert_array_equal(a.counterfactual_probe().tokens, b.counterfactual_probe().tokens)


def test_filtering_drops_exactly_the_cs_points():
    full = make_fact_world(FactWorldConfig(**BASE, cs_fraction=0.5))
    filtered = make_fact_world(FactWorldConfig(**BASE, cs_fraction=0.5, filter_cs=True))
    assert len(filtered.finetune[CS]) == 0 and len(full.finetune[CS]) == 20
    np.testing.assert_array_equal(full.finetune[C].tokens, filtered.finetune[C].tokens)


def test_pretraining_rates_and_label_noise_are_honoured():
    config = FactWorldConfig(**BASE)
    world = make_fact_world(config)
    batch = pretraining_batch(world, np.random.default_rng(5), 40000)
    has_context = np.any(_context_tokens(config, batch.tokens) != NONE, axis=1)
    is_copy = np.isin(_subject(batch.tokens), world.copy_subjects)
    assert abs(is_copy.mean() - config.copy_rate) < 0.01
    assert abs((has_context & ~is_copy).mean() - config.agree_rate) < 0.01
    fact = dict(zip(world.known_subjects.tolist(), world.known_answers.tolist(), strict=True))
    recall = ~has_context
    wrong = np.array(
        [fact[s] != t for s, t in zip(_subject(batch.tokens)[recall], batch.targets[recall], strict=True)]
    )
    assert abs(wrong.mean() - config.fact_noise) < 0.015
    copy_rows = batch.tokens[is_copy]
    copied = np.array(
        [t in row for t, row in zip(batch.targets[is_copy], _context_tokens(config, copy_rows), strict=True)]
    )
    assert abs((1 - copied.mean()) - config.copy_noise) < 0.02
    assert batch.tokens.min() >= 0 and batch.tokens.max() < config.vocab_size
    assert np.all(batch.targets >= config.vocab_size - config.n_answers)
    assert N_SPECIAL > NONE


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(cs_fraction=1.2), "cs_fraction"),
        (dict(copy_rate=0.8, agree_rate=0.5), "agree_rate"),
        (dict(n_known_facts=30), "n_known_facts"),
        (dict(n_answers=1), "n_answers"),
        (dict(cs_fraction=1.0, filter_cs=True), "filter_cs"),
    ],
)
def test_bad_world_config_names_the_field(overrides, key):
    with pytest.raises(ConfigError) as err:
        FactWorldConfig(**{**BASE, **overrides})
    assert err.value.key == key
