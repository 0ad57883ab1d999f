"""Batched training, padding and the statistics behind the figure experiments (cpi_theory.phenomena._batch*)."""

import jax
import numpy as np
import pytest
import scipy.stats

import cpi_theory as ct
from cpi_theory.phenomena import _batch as ph
from cpi_theory.phenomena import _self_aligning as pf
from cpi_theory.phenomena import _with_without_context as pc


def test_padding_changes_no_trajectory():
    world = ct.build_world(ct.Config(steps=40))
    padded = ph.pad_world(world, world.n_points + 7)
    assert padded.n_points == world.n_points + 7
    a = ct.train(world, ct.pretrained_state(world, -30.0), 1.0, 0.5, steps=40)
    b = ct.train(padded, ct.pretrained_state(padded, -30.0), 1.0, 0.5, steps=40)
    np.testing.assert_allclose(b.records["context_reliance"], a.records["context_reliance"], rtol=1e-12)
    np.testing.assert_allclose(b.records["per_class"]["loss"], a.records["per_class"]["loss"], rtol=1e-12)
    np.testing.assert_allclose(b.final_state.w_v, a.final_state.w_v, rtol=1e-12, atol=1e-12)


def test_pad_world_rejects_shrinking():
    world = ct.build_world(ct.Config())
    with pytest.raises(ValueError, match="n_points"):
        ph.pad_world(world, world.n_points - 1)


def test_train_batch_matches_simulate_per_run():
    # Same number of points (20) so simulate compiles once; the batch mixes classes and lr_v.
    configs = [
        ct.Config(steps=60),
        ct.Config(steps=60, n_context_critical=14, n_non_context_critical=6, delta_m=0.7),
        ct.Config(
            steps=60, n_context_critical=8, n_non_context_critical=8, n_counterfactual_augmented=4, lr_v=0.3
        ),
    ]
    result = ph.train_batch(
        [ct.build_world(c) for c in configs],
        1.0,
        np.array([c.lr_v for c in configs]),
        relation_score=-30.0,
        steps=60,
    )
    for i, config in enumerate(configs):
        expected = ct.simulate(config).context_reliance
        np.testing.assert_allclose(np.asarray(result.records["context_reliance"][i]), expected, rtol=1e-11)


def test_train_batch_reports_divergence():
    world = ct.build_world(ct.Config())
    with pytest.raises(ct.DivergenceError, match=r"at step 1 \(run 1 of the batch"):
        ph.train_batch([world, world], [1.0, np.inf], 0.0, relation_score=-30.0, steps=3)


def test_rank_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(12), size=5)
    q = rng.dirichlet(np.ones(12), size=5)
    p[:, :4] = p[:, :1]  # ties
    expected = [scipy.stats.spearmanr(p[i], q[i])[0] for i in range(5)]
    np.testing.assert_allclose(ph.rank_correlation(p, q), expected, rtol=1e-12)
    assert ph.rank_correlation(p[0], p[0])[0] == pytest.approx(1.0)
    assert np.isnan(ph.rank_correlation(np.full(4, 0.25), p[0, :4])[0])


def test_kl_divergence():
    p = np.array([0.5, 0.25, 0.25])
    q = np.array([0.25, 0.5, 0.25])
    assert ph.kl_divergence(p, p) == 0.0
    assert ph.kl_divergence(p, q) == pytest.approx(0.5 * np.log(2) + 0.25 * np.log(0.5))


def test_partial_correlation_matches_formula():
    rng = np.random.default_rng(1)
    z = rng.normal(size=200)
    x = z + rng.normal(size=200)
    y = z + 0.5 * x + rng.normal(size=200)
    r = np.corrcoef([x, y, z])
    expected = (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert ph.partial_correlation(x, y, z) == pytest.approx(expected, rel=1e-10)
    # Correlated only through z: the partial correlation vanishes (up to noise), the plain one does not.
    y2 = z + rng.normal(size=200)
    assert abs(ph.partial_correlation(x, y2, z)) < 0.2 < np.corrcoef(x, y2)[0, 1]
    with pytest.raises(ValueError):
        ph.partial_correlation([1, 2, 3], [1, 2, 3], [1, 2, 3])


def test_save_dataset_is_byte_deterministic(tmp_path):
    import xarray as xr

    ds = xr.Dataset(
        {"a": (("x",), np.arange(3.0))}, coords={"x": np.arange(3), "name": ("x", ["u", "v", "w"])}
    )
    from cpi_theory import figures

    figures.save_dataset(ds, str(tmp_path / "a.nc"))
    figures.save_dataset(ds, str(tmp_path / "b.nc"))
    assert (tmp_path / "a.nc").read_bytes() == (tmp_path / "b.nc").read_bytes()
    back = figures.load_dataset(str(tmp_path / "a.nc"))
    np.testing.assert_array_equal(back.a.values, ds.a.values)
    assert list(back.name.values) == ["u", "v", "w"]


def _bank(seed=0, wrong_fraction=0.4):
    return pf.fact_bank(
        seed,
        n_finetune=10,
        n_held_out=30,
        n_answers=20,
        strength_range=(0.3, 0.8),
        wrong_fraction=wrong_fraction,
    )


def test_fact_bank_own_answer_can_be_wrong():
    bank = _bank()
    world = pf.finetuning_world(bank, bank.true_answer[:10])
    dist = np.asarray(
        pf.answer_distributions(ct.pretrained_state(world, -30.0), world, bank.vocab, np.arange(40))
    )
    own = dist.argmax(-1)
    stronger = bank.wrong_strength > bank.true_strength
    assert 0 < stronger.sum() < 40
    # The model's own answer is the stronger of the two memorized answers: wrong exactly where the
    # distractor is stronger.
    np.testing.assert_array_equal(own == bank.true_answer, ~stronger)
    assert np.all((bank.true_strength >= 0.3) & (bank.true_strength <= 0.8))
    again = _bank()
    np.testing.assert_array_equal(again.table, bank.table)  # seeded: deterministic


def test_finetuning_targets_kinds():
    bank = _bank()
    own = np.where(bank.wrong_strength > bank.true_strength, bank.wrong_answer, bank.true_answer)
    np.testing.assert_array_equal(
        pf.finetuning_targets(bank, own, ["harmonious"] * 10, 0), bank.true_answer[:10]
    )
    np.testing.assert_array_equal(pf.finetuning_targets(bank, own, ["self_aligning"] * 10, 0), own[:10])
    new = pf.finetuning_targets(bank, own, ["incompatible"] * 10, 0)
    assert np.all((new != bank.true_answer[:10]) & (new != bank.wrong_answer[:10]))
    assert pf.mixture_kinds(10, 0.2) == ["incompatible"] * 2 + ["self_aligning"] * 8
    with pytest.raises(ValueError, match="kind"):
        pf.finetuning_targets(bank, own, ["other"] * 10, 0)


def test_self_aligning_preserves_held_out_better_than_incompatible():
    bank = _bank(seed=3)
    base = pf.finetuning_world(bank, bank.true_answer[:10])
    state0 = ct.pretrained_state(base, -30.0)
    pre = np.asarray(pf.answer_distributions(state0, base, bank.vocab, np.arange(40)))
    own = pre.argmax(-1)
    worlds = [
        pf.finetuning_world(bank, own[:10]),
        pf.finetuning_world(bank, pf.finetuning_targets(bank, own, ["incompatible"] * 10, 0)),
    ]
    result = ph.train_batch(worlds, 1.0, 1.0, relation_score=-30.0, steps=150, record_every=150)
    reports = []
    for i, world in enumerate(worlds):
        state = jax.tree.map(lambda x, i=i: x[i], result.final_state)
        post = np.asarray(pf.answer_distributions(state, world, bank.vocab, np.arange(40)))
        reports.append(pf.consistency_report(bank, pre[10:], post[10:]))
    self_aligning, incompatible = reports
    assert self_aligning["kl"] < incompatible["kl"]
    assert self_aligning["rank_correlation"] > incompatible["rank_correlation"]


def test_context_mix_world_and_router():
    facts = pc.new_facts(4, delta_c=0.2, delta_m=0.6)
    world = pc.context_mix_world(facts, 1.0)
    np.testing.assert_array_equal(np.asarray(world.weight), [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(world.has_context), [True] * 4 + [False] * 4)
    with pytest.raises(ValueError, match="context_fraction"):
        pc.context_mix_world(facts, 1.5)
    state0 = ct.pretrained_state(world, -30.0)
    pred = pc.suite_predictions(state0, world, facts)
    summary = pc.suite_summary(pred)
    assert set(pc.SUITE_METRICS) <= set(summary)
    # Before training, nothing about the new facts is memorized: uniform over K tokens.
    np.testing.assert_allclose(pred["memorized_probability"], 1.0 / facts.vocab.n_tokens, rtol=1e-9)
    routed = pc.routed_summary(pred, pred)
    assert pc.suite_score(routed) == pytest.approx(
        np.mean(
            [
                summary["closed_book_probability"],
                summary["context_probability"],
                summary["counterfactual_probability"],
            ]
        )
    )
