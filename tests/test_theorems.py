"""The paper's statements at t = 0 and t = 1, 2, checked on the full model (Lemmas 4-6, Theorem 1)."""

import numpy as np

import cpi_theory as cpi


def test_margins_at_initialisation():
    """m_C > 0 > m_{C+S} and |m_C| > |m_{C+S}| at t = 0 (context-critical points dominate)."""
    config = cpi.Config()
    world = cpi.build_world(config)
    margins = np.asarray(
        cpi.metrics(cpi.pretrained_state(world, config.relation_score), world)["per_class"]["margin"]
    )
    m_c, m_cs = margins[0], margins[1]
    assert m_c > 0 > m_cs
    assert abs(m_c) > abs(m_cs)


def test_theorem1_one_step_regime_at_large_learning_rate():
    """Theorem 1: at a large learning rate M_C(1) > M_C(0) and M_C(1) > M_C(2)."""
    mc = cpi.simulate({"lr_kq": 20.0, "steps": 2}).context_reliance
    assert mc[1] > mc[0] and mc[1] > mc[2]


def test_small_learning_rate_is_not_one_step():
    """At lr_kq = 1 the peak is reached after many steps: the one-step statement is specific to large rates."""
    mc = cpi.simulate({"steps": 2}).context_reliance
    assert mc[0] < mc[1] < mc[2]


def test_qk_only_keeps_value_matrix():
    traj = cpi.simulate({"steps": 10})
    world = cpi.build_world(traj.config)
    np.testing.assert_array_equal(traj.final_state.w_v, cpi.pretrained_state(world, -30.0).w_v)
