"""The paper's lemmas and propositions as code, each checked against the full d x d model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.paper import _paper as paper


def full_one_step(cfg, lr_kq, lr_v=0.0):
    world = cpi.build_world(cfg)
    state0 = cpi.pretrained_state(world, cfg.relation_score)
    state1, _ = cpi.gd_step(state0, world, lr_kq, lr_v)
    return world, state0, state1


def full_query_gradient(state, world):
    """-grad_{W_KQ} L applied to phi(r): the drift of q."""
    grad = jax.grad(cpi.training_loss)(state, world).w_kq
    return -grad[:, world.relation + 2]  # e_r is the last coordinate (d = K + 2)


@pytest.fixture(scope="module")
def default_eta_star():
    return paper.eta_star()


def test_lemma3_value_logits_match_the_pretrained_table():
    cfg = cpi.Config(o_c=0.3, o_r=-0.7)
    lem = paper.lemma3_value_logits(cfg)
    world = cpi.build_world(cfg)
    state = cpi.pretrained_state(world, cfg.relation_score)
    c, s_cs, a_cs = int(world.context[0]), int(world.subject[10]), int(world.target[10])
    v_c = np.asarray(cpi.value_logits(state, world, jnp.asarray(c)))
    v_s = np.asarray(cpi.value_logits(state, world, jnp.asarray(s_cs)))
    assert abs(v_c[c] - lem.self_copy) < 1e-12 and abs(v_s[a_cs] - lem.memory) < 1e-12
    assert abs(np.exp(v_c[c]) / np.exp(v_c).sum() - cfg.delta_c) < 1e-12
    assert abs(np.exp(v_s[a_cs]) / np.exp(v_s).sum() - cfg.delta_m) < 1e-12
    assert abs(lem.p_self_copy - cfg.delta_c) < 1e-12 and abs(lem.p_memory - cfg.delta_m) < 1e-12


@pytest.mark.parametrize(
    "overrides", [{}, {"o_c": 0.5, "o_r": -1.0, "relation_score": -2.0}, {"n_answers": 90, "delta_c": 0.1}]
)
def test_lemma4_closed_forms_match_the_full_margin_at_t0(overrides):
    cfg = cpi.Config(steps=0, **overrides)
    lem = paper.lemma4_values(cfg)
    full = cpi.simulate(cfg)
    assert abs(lem.m_c - full.per_class["context_critical"]["margin"][0]) < 1e-12
    assert abs(lem.m_cs - full.per_class["non_context_critical"]["margin"][0]) < 1e-12
    assert lem.signs_hold and lem.size_holds and lem.holds
    # The closed forms do not involve the state: only Lemma 3's entries, vocabulary sizes and sigma_0.
    margins = paper.lemma4_margins()
    names = {str(s) for e in (margins.m_c, margins.m_cs) for s in e.free_symbols}
    assert names <= {"lambda_C", "lambda_M", "o_c", "o_r", "K_A", "K_S", "sigma_0"}


def test_assumption_check_names_each_violation():
    default = paper.check_assumptions(cpi.Config())
    assert default.holds and default.violated == {}
    bad = paper.check_assumptions(
        cpi.Config(lr_v=0.1, n_context_critical=8, n_subject_only=2, o_c=1.0, relation_score=-1.0)
    )
    assert not bad.holds
    assert set(bad.violated) >= {
        "frozen_w_v",
        "balanced_classes",
        "no_subject_only_points",
        "uniform_value_logits",
        "relation_ignored",
    }


def test_eta_star_is_where_the_full_models_shared_gradient_flips(default_eta_star):
    cfg = cpi.Config()
    eta = default_eta_star
    assert 1.0 < eta < 100.0
    vocab = cpi.Vocabulary(cfg.n_subjects, cfg.n_answers)
    signs = []
    for lr in (eta * (1 - 1e-6), eta * (1 + 1e-6)):
        world, _, state1 = full_one_step(cfg, lr)
        signs.append(float(full_query_gradient(state1, world)[vocab.theta_c]))
    assert signs[0] > 0 > signs[1]
    # The reduced one-step map gives the full model's gradient, not just its sign.
    world, state0, state1 = full_one_step(cfg, 5.0)
    assert (
        abs(
            paper.shared_direction_gradient(cfg, lr=5.0)
            - float(full_query_gradient(state1, world)[vocab.theta_c])
        )
        < 1e-12
    )
    assert (
        abs(
            paper.shared_direction_gradient(cfg, step=0)
            - float(full_query_gradient(state0, world)[vocab.theta_c])
        )
        < 1e-12
    )


def test_theorem1_at_eta_star_against_the_full_model(default_eta_star):
    lr = 1.05 * default_eta_star
    check = paper.theorem1(lr=lr)
    assert check.holds and check.lr == lr
    full = cpi.simulate(cpi.Config(steps=2, lr_kq=lr))
    np.testing.assert_allclose(check.context_reliance, full.context_reliance, rtol=0, atol=1e-10)


def test_proposition2_against_the_full_model():
    prop = paper.proposition2(lr=1.0)
    assert prop.holds
    for n_s, values in ((0, prop.gap_push_without), (10, prop.gap_push_with)):
        cfg = paper._with_room(cpi.Config(), n_subject_only=n_s)
        world, state0, state1 = full_one_step(cfg, 1.0)
        vocab = cpi.Vocabulary(cfg.n_subjects, cfg.n_answers)
        for state, value in ((state0, values[0]), (state1, values[1])):
            drift = full_query_gradient(state, world)
            gap = float(drift[vocab.theta_c] - drift[vocab.theta_s]) * np.sqrt(0.5)
            assert abs(gap - value) < 1e-12


def test_proposition3_one_value_step_makes_c_subjects_vote_for_their_answers():
    prop = paper.proposition3(lr_v=1.0)
    assert prop.before == 0.0 and prop.after > 0 and prop.holds
    cfg = cpi.Config()
    world, _, state1 = full_one_step(cfg, 0.0, 1.0)
    s, c = int(world.subject[0]), int(world.context[0])
    unused = world.relation - 1  # the last answer token is never used
    v = np.asarray(cpi.value_logits(state1, world, jnp.asarray(s)))
    assert abs((v[c] - v[unused]) - prop.after) < 1e-12
