"""The late-time law (cpi_theory.paper.late_time_law) against long exact runs of the reduced engine.

Tolerances (stated in the README and docs/late_time.md): at t = 10^6 steps the probe's score gap agrees
with g log t + d0 to 1e-4 and M_C with the law's M_C(t) to 5e-5, and the error falls like 1/t (at least
5x per decade from 10^5 to 10^6); at t = 10^7 the default mixture is on its plateau to 1e-6.
"""

import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory import paper
from cpi_theory.reduced import reduced_params
from cpi_theory.reduced._minimal import minimal_train

CASES = {
    "paper default (plateau)": ({}, 0.0, "plateau"),
    "more C than C+S (context)": ({"n_context_critical": 11, "n_non_context_critical": 9}, 0.7, "context"),
    "augmented, memory": (
        {"n_context_critical": 6, "n_non_context_critical": 12, "n_counterfactual_augmented": 3},
        0.0,
        "memory",
    ),
    "augmented balance (plateau)": (
        {"n_context_critical": 7, "n_non_context_critical": 10, "n_counterfactual_augmented": 3},
        0.7,
        "plateau",
    ),
    "S points, real class sizes": (
        {"n_subject_only": 5, "n_context_critical": 8.5, "n_non_context_critical": 11.5},
        0.0,
        "memory",
    ),
    "o_c, o_r, deltas, lr_kq": (
        {"o_c": 0.3, "o_r": -0.5, "delta_m": 0.8, "delta_c": 0.1, "lr_kq": 0.5, "n_context_critical": 12},
        0.0,
        "context",
    ),
}


def _long_run(config, context_bias, steps, every):
    params = reduced_params(config, context_bias=np.float64(context_bias))
    records = minimal_train(params, steps=steps, record_every=every).records
    t = np.arange(steps // every + 1) * every
    gap = np.log(np.asarray(records["attention_context"]) / np.asarray(records["attention_subject"]))
    return t, gap, np.asarray(records["context_reliance"]), records


@pytest.mark.parametrize("name", list(CASES))
def test_the_law_matches_a_million_exact_steps(name):
    overrides, beta, kind = CASES[name]
    config = cpi.Config(**overrides)
    law = paper.late_time_law(config, context_bias=beta)
    assert law.closed_form and law.limit_kind == kind
    t, gap, mc, records = _long_run(config, beta, 1_000_000, 100_000)
    gap_error = np.abs(gap[1:] - (law.score_gap_slope * np.log(t[1:]) + law.score_gap_offset))
    mc_error = np.abs(mc[1:] - law.context_reliance(t[1:]))
    assert gap_error[-1] < 1e-4 and mc_error[-1] < 5e-5, (gap_error, mc_error)
    assert gap_error[0] > 5 * gap_error[-1]  # O(1/t): t = 1e5 vs 1e6
    assert abs(mc[0] - law.start) < 1e-12  # the start, with the relation's e^rho neglected
    # the saturation amplitudes are Lemma 2's margins at saturation (the engine's own margin record)
    margins = np.asarray(records["per_class"]["margin"])[-1]
    for index, k in enumerate(("C", "CS", "S", "AUG")):
        if k in law.saturation_amplitudes:
            assert abs(abs(margins[index]) / law.saturation_amplitudes[k] - 1) < 1e-3
    # the limit is approached from the side the law says, with the power t^-|g|
    if kind != "plateau":
        assert np.sign(mc[-1] - law.limit) == np.sign(law.amplitude)  # M_C(t) - limit ~ amplitude t^-|g|
        assert law.exponent == pytest.approx(abs(law.score_gap_slope))


def test_ten_million_steps_on_the_default_plateau():
    law = paper.late_time_law()
    _, _, mc, _ = _long_run(cpi.Config(), 0.0, 10_000_000, 1_000_000)
    assert abs(mc[-1] - law.limit) < 1e-6
    # and the old closed-form plateau (equal class sizes) is this law's special case
    assert law.limit == pytest.approx(paper.plateau().context_reliance, abs=1e-14)


def test_the_limit_kind_is_decided_by_the_class_counts_alone():
    for delta_m, delta_c in ((0.6, 0.2), (0.9, 0.05), (0.45, 0.2)):
        for n_cs, kind, side in ((8, "context", "above start"), (12, "memory", "below start")):
            law = paper.late_time_law(
                cpi.Config(delta_m=delta_m, delta_c=delta_c, n_non_context_critical=n_cs)
            )
            assert (law.limit_kind, law.versus_start) == (kind, side)
    assert paper.infinite_horizon_boundary() == 0.5
    assert paper.infinite_horizon_boundary(cpi.Config(n_counterfactual_augmented=4)) == pytest.approx(0.6)
    assert (
        paper.infinite_horizon_boundary(
            cpi.Config(n_context_critical=4, n_non_context_critical=4, n_counterfactual_augmented=9)
        )
        is None
    )


def test_value_training_is_said_to_have_no_closed_form():
    law = paper.late_time_law(cpi.Config(lr_v=0.1))
    assert not law.closed_form and law.limit is None and law.limit_kind == "not derived"
    assert "lr_v" in law.reason
    with pytest.raises(ValueError, match="no late-time law"):
        law.context_reliance(10.0)
    with pytest.raises(ValueError, match="lr_v"):
        paper.infinite_horizon_boundary(cpi.Config(lr_v=0.1))
    with pytest.raises(ValueError, match="context_bias"):
        paper.late_time_law(context_bias=float("nan"))


def test_amplitudes_are_derived_from_the_reduced_model_and_match_lemma3_forms():
    expressions = paper.late_time_expressions()
    assert set(expressions.amplitude) == {"C", "CS", "AUG"}
    cfg = cpi.Config(o_c=0.2, o_r=-0.3, delta_m=0.7, delta_c=0.15, n_counterfactual_augmented=2)
    a = paper.saturation_amplitudes(cfg)
    lem = paper.lemma3_value_logits(cfg)
    lam_c, lam_m = lem.self_copy, lem.memory
    z = (cfg.n_answers - 1) * np.exp(cfg.o_c) + np.exp(cfg.o_r) + cfg.n_subjects
    assert a["C"] == pytest.approx((lam_c - cfg.o_c) * (1 - cfg.delta_c), rel=1e-12)
    assert a["CS"] == pytest.approx((lam_m - lam_c) * (1 - cfg.delta_m), rel=1e-12)
    # augmented: the C form plus the memorized answer's pull, (lambda_M - o_c) p(a | context-saturated)
    extra = (lam_m - cfg.o_c) * np.exp(cfg.o_c) * (1 - cfg.delta_c) / z
    assert a["AUG"] == pytest.approx(a["C"] + extra, rel=1e-12)


def test_the_displayed_amplitudes_are_checked_against_the_derivation():
    from cpi_theory.paper._late_time import _check_compact, _compact_amplitudes, _derived_amplitudes

    derived, compact = _derived_amplitudes(), _compact_amplitudes()
    _check_compact(derived, compact)  # the shipped forms pass
    with pytest.raises(RuntimeError, match="a_CS|CS"):
        _check_compact(derived, {**compact, "CS": compact["CS"] * 1.001})
