"""Trainer properties: permutation invariance, recording, no retracing on new learning rates, divergence."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi


def _permuted(world, order):
    per_point = ("context", "subject", "target", "has_context", "weight", "data_class")
    return dataclasses.replace(world, **{k: getattr(world, k)[order] for k in per_point})


def test_permuting_training_points_changes_nothing():
    config = cpi.Config.from_mapping(
        {"n_subject_only": 3, "n_counterfactual_augmented": 2, "lr_v": 0.2, "steps": 40}
    )
    world = cpi.build_world(config)
    state0 = cpi.pretrained_state(world, config.relation_score)
    order = np.random.default_rng(1).permutation(world.n_points)
    a = cpi.train(world, state0, 1.0, 0.2, steps=40)
    b = cpi.train(_permuted(world, order), state0, 1.0, 0.2, steps=40)
    for key in ("context_reliance", "loss", "attention_context"):
        np.testing.assert_allclose(a.records[key], b.records[key], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.final_state.w_v, b.final_state.w_v, rtol=1e-12, atol=1e-13)


def test_recording_subsamples_the_same_trajectory():
    every = cpi.simulate({"steps": 23})
    sparse = cpi.simulate({"steps": 23, "record_every": 5})
    assert sparse.step.tolist() == [0, 5, 10, 15, 20, 23]
    np.testing.assert_allclose(sparse.context_reliance, every.context_reliance[sparse.step], rtol=1e-12)


def test_changing_learning_rates_does_not_retrace():
    world = cpi.build_world(cpi.Config())
    state0 = cpi.pretrained_state(world, -30.0)
    cpi.train(world, state0, 1.0, 0.0, steps=3)
    before = cpi.train._cache_size()
    for lr_kq, lr_v in [(0.5, 0.0), (3.0, 0.1), (1e-3, 2.0)]:
        cpi.train(world, state0, lr_kq, lr_v, steps=3)
    assert cpi.train._cache_size() == before


@pytest.mark.parametrize("n_subject_only, n_augmented", [(0, 0), (3, 2)])
def test_frozen_value_path_equals_the_general_step(n_subject_only, n_augmented):
    """At lr_v = 0 the trainer runs on W_V's constant value logits; a plain loop of the general
    ``gd_step`` and ``metrics`` (d x d products every step, autodiff through W_V) must give the same
    trajectory and every recorded metric, Lemma 2's margins included."""
    config = cpi.Config.from_mapping(
        {"n_subject_only": n_subject_only, "n_counterfactual_augmented": n_augmented, "steps": 25}
    )
    world = cpi.build_world(config)
    state = cpi.pretrained_state(world, config.relation_score)
    fast = cpi.train(world, state, 2.0, 0.0, steps=25, record_every=5)
    step = 0
    for i, recorded in enumerate(cpi.recorded_steps(25, 5)):
        for _ in range(recorded - step):
            state, _ = cpi.gd_step(state, world, 2.0, 0.0)
        step = recorded
        expected = cpi.metrics(state, world)
        got = jax.tree.map(lambda x, i=i: x[i], fast.records)
        for key in ("context_reliance", "attention_context", "loss", "parametric_accuracy"):
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-11, err_msg=f"step {step}, {key}")
        for key, value in expected["per_class"].items():
            np.testing.assert_allclose(
                got["per_class"][key], value, rtol=1e-11, atol=1e-12, err_msg=f"step {step}, {key}"
            )
    assert step == 25
    np.testing.assert_array_equal(fast.final_state.w_v, cpi.pretrained_state(world, -30.0).w_v)
    np.testing.assert_allclose(fast.final_state.w_kq, state.w_kq, rtol=1e-11, atol=1e-12)


def test_divergence_is_detected_with_its_step():
    world = cpi.build_world(cpi.Config())
    state0 = cpi.pretrained_state(world, -30.0)
    result = cpi.train(world, state0, jnp.inf, 0.0, steps=4)
    assert int(result.first_nonfinite_step) == 1
    config = cpi.Config.from_mapping({"steps": 4})
    with pytest.raises(cpi.DivergenceError, match="step 1"):
        cpi.simulation.check_finite(config, int(result.first_nonfinite_step), result.records)


def test_per_class_outputs_follow_the_classes_present():
    traj = cpi.simulate({"n_subject_only": 2, "steps": 3})
    assert set(traj.per_class) == {"context_critical", "non_context_critical", "subject_only"}
    assert "margin" not in traj.per_class["subject_only"]
    np.testing.assert_array_equal(traj.per_class["subject_only"]["attention_context"], 0.0)


def test_simulate_accepts_config_or_mapping_and_rejects_unknown_engine():
    a = cpi.simulate(cpi.Config(steps=3))
    b = cpi.simulate({"steps": 3})
    np.testing.assert_array_equal(a.context_reliance, b.context_reliance)
    with pytest.raises(cpi.ConfigError, match="engine"):
        cpi.simulate({"steps": 3}, engine="nope")


def test_full_engine_rejects_real_class_sizes():
    with pytest.raises(cpi.ConfigError, match="integer class counts"):
        cpi.simulate({"n_context_critical": 2.5, "steps": 1}, engine="full")
