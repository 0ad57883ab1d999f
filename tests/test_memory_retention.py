"""Memory retention: the closed-book query [s*, r] -> a* of the held-out memorized fact, in the minimal
reduced engine (records ``memory_recall`` = p(a* | [s*, r]) and ``memory_accuracy``), against the same
query on the full d x d model at a trained state, to 1e-10; and what training W_V costs it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory import model
from cpi_theory.reduced import GENERAL, minimal_train, reduced_train

TOL = 1e-10
STEPS = 40


def closed_book(state, world) -> tuple[float, float]:
    """(p(a*), 1 if a* is the argmax) of [s*, r] on the full model at ``state``."""
    logits, _ = model.forward(
        state, world, world.probe_context[None], world.probe_subject[None], jnp.zeros((1,), dtype=bool)
    )
    p = jax.nn.softmax(logits[0])
    a_star = int(world.probe_memorized)
    return float(p[a_star]), float(int(jnp.argmax(logits[0])) == a_star)


def full_closed_book(cfg: cpi.Config) -> dict[int, tuple[float, float]]:
    """The closed-book query on the full model at the pretrained state (step 0) and after ``cfg.steps``."""
    world = cpi.build_world(cfg)
    state = cpi.pretrained_state(world, cfg.relation_score)
    out = cpi.train(world, state, cfg.lr_kq, cfg.lr_v, steps=cfg.steps, record_every=cfg.steps)
    return {0: closed_book(state, world), cfg.steps: closed_book(out.final_state, world)}


# W_V trained with every class present (the general regime) and W_V frozen, o_c / o_r != 0.
CASES = {
    "general": dict(
        n_context_critical=7,
        n_non_context_critical=5,
        n_subject_only=3,
        n_counterfactual_augmented=2,
        lr_v=0.4,
        o_c=0.3,
        o_r=-0.5,
        relation_score=-4.0,
    ),
    "frozen": dict(o_c=-0.2, o_r=0.4, relation_score=-3.0, lr_kq=2.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_closed_book_recall_matches_the_full_model(name):
    cfg = cpi.Config(**CASES[name], steps=STEPS, record_every=STEPS)
    full = full_closed_book(cfg)
    records = reduced_train(cpi.reduced_params(cfg), steps=STEPS, record_every=STEPS).records
    for index, step in enumerate((0, STEPS)):
        recall, accurate = full[step]
        np.testing.assert_allclose(float(records["memory_recall"][index]), recall, rtol=0, atol=TOL)
        assert float(records["memory_accuracy"][index]) == accurate, step
    if name == "general":
        # the covering regime and the general 166-coordinate engine give the same records
        general = cpi.reduced.general_train(cpi.reduced_params(cfg), steps=STEPS, record_every=STEPS)
        for key in ("memory_recall", "memory_accuracy"):
            np.testing.assert_allclose(
                np.asarray(general.records[key]), np.asarray(records[key]), rtol=0, atol=1e-12
            )


def test_value_training_costs_memory_and_frozen_values_keep_it():
    """W_V frozen: p(a* | [s*, r]) moves only through the closed-book attention on r (e^relation_score);
    training W_V changes the value rows of s*'s neighbours and moves it by orders of magnitude more."""
    base = cpi.Config(steps=STEPS)
    params = cpi.reduced_params(base)
    frozen = np.asarray(minimal_train(params, steps=STEPS, record_every=STEPS).records["memory_recall"])
    change_frozen = abs(frozen[-1] - frozen[0])
    assert change_frozen < 10 * np.exp(base.relation_score)
    # (the general case's compiled program above: same regime, steps and record_every)
    trained = params.replace(lr_v=jnp.asarray(1.0, dtype=jnp.float64))
    valued = minimal_train(trained, steps=STEPS, record_every=STEPS, regime=GENERAL).records["memory_recall"]
    valued = np.asarray(valued)
    assert valued[0] == pytest.approx(frozen[0], abs=1e-14)
    assert abs(valued[-1] - valued[0]) > 1e3 * max(change_frozen, 1e-16)
