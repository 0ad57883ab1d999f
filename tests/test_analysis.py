"""Gradient flow, peak, plateau, phase boundary and lr_v / lr_kq effect, each against brute-force simulation."""

import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.paper import _analysis as analysis
from cpi_theory.paper import _flow as flow
from cpi_theory.reduced import reduced_metrics_jit, reduced_step


def gd_mc(cfg, lr, n_steps):
    """M_C after each of ``n_steps`` reduced GD steps at lr_kq = lr (lr_v scaled to keep the ratio)."""
    params = cpi.reduced_params(cfg.replace(lr_kq=lr, lr_v=lr * cfg.lr_v / cfg.lr_kq))
    x = cpi.reduced_initial_state(params)
    mc = [float(reduced_metrics_jit(x, params)["context_reliance"])]
    for _ in range(n_steps):
        x, _ = reduced_step(x, params)
        mc.append(float(reduced_metrics_jit(x, params)["context_reliance"]))
    return np.array(mc), np.asarray(x)


def test_gd_converges_to_the_gradient_flow_at_rate_eta():
    cfg = cpi.Config(lr_v=0.3)  # the flow keeps the ratio lr_v / lr_kq
    tau = 4.0
    sol = flow.gradient_flow(cfg, t_max=tau)
    target_state, target_mc = sol.state(tau), sol.context_reliance(tau)[0]
    errors = []
    for eta in (0.4, 0.2, 0.1):
        mc, x = gd_mc(cfg, eta, round(tau / eta))
        errors.append((np.max(np.abs(x - target_state)), abs(mc[-1] - target_mc)))
    errors = np.array(errors)
    ratios = errors[:-1] / errors[1:]  # halving eta halves the error: first order
    assert np.all((ratios > 1.7) & (ratios < 2.3)), errors


def test_peak_against_the_full_engine_and_the_flow():
    peak = analysis.inversion_peak()
    full = cpi.simulate().summary()
    assert peak.peak_step == full.peak_step and 0 < peak.peak_step < peak.final_step  # an interior peak
    assert abs(peak.peak - full.peak) < 1e-10 and abs(peak.final - full.final) < 1e-10
    # The flow's peak (time tau = lr_kq t) is the small-lr limit of GD's: GD at lr 0.5 is within O(lr).
    fp = flow.flow_peak(cpi.Config(steps=60))
    mc, _ = gd_mc(cpi.Config(), 0.5, 120)
    i = int(np.argmax(mc))
    assert fp.interior and abs(0.5 * i - fp.peak_tau) < 1.0 and abs(mc[i] - fp.peak) < 3e-3


def test_plateau_closed_form_against_a_long_full_simulation():
    pred = analysis.plateau()
    # Brute force: the full d x d model, 2e4 steps at lr 10 (tau = 2e5), then tau = 2e4 as a check of the trend.
    late = cpi.simulate(cpi.Config(lr_kq=10.0, steps=20000, record_every=2000))
    mc = late.context_reliance
    errors = np.abs(mc[1:] - pred.context_reliance)
    assert errors[-1] < 1e-4  # stated tolerance at tau = 2e5 (the approach is ~log(t)/t)
    assert errors[-1] < errors[0]
    assert abs(late.attention_context[-1] - pred.attention_context) < 1e-4
    with pytest.raises(ValueError, match="no plateau"):
        analysis.plateau(cpi.Config(n_context_critical=8))
    with pytest.raises(ValueError, match="lr_v"):
        analysis.plateau(cpi.Config(lr_v=0.1))


def test_shared_components_are_the_class_weighted_sums_of_the_per_point_ones():
    """The invariant behind the plateau: kappa_thC = sum_k n_k kappa_{k,c}, kappa_thS = sum_k n_k kappa_{k,s}
    (exact for any rates and classes; checked with W_V training, S and augmented points)."""
    cfg = cpi.Config(lr_v=0.3, n_subject_only=3, n_counterfactual_augmented=2)
    x = np.asarray(cpi.reduced_train(cpi.reduced_params(cfg), steps=300, record_every=1).final_state)
    k = dict(zip(cpi.reduced_state_names(), x, strict=False))
    n = dict(zip(("C", "CS", "S", "AUG"), cfg.class_counts(), strict=True))
    theta_c = sum(n[c] * k[f"kappa_{c}_c"] for c in ("C", "CS", "AUG"))
    theta_s = sum(n[c] * k[f"kappa_{c}_s"] for c in ("C", "CS", "S", "AUG"))
    assert abs(k["kappa_thC"]) > 0.1
    assert abs(k["kappa_thC"] - theta_c) < 1e-10 and abs(k["kappa_thS"] - theta_s) < 1e-10


def test_phase_boundary_in_the_cs_fraction_against_integer_class_counts():
    threshold = 0.01
    f_star = analysis.phase_boundary(axis="cs_fraction", bounds=(0.3, 0.45), threshold=threshold)
    assert 0.3 < f_star < 0.45
    # Brute force with the full engine at the integer class counts on either side of the boundary.
    k = int(np.floor(f_star * 20))
    below = cpi.simulate(cpi.Config(n_context_critical=20 - k, n_non_context_critical=k)).summary()
    above = cpi.simulate(cpi.Config(n_context_critical=19 - k, n_non_context_critical=k + 1)).summary()
    assert below.depth < threshold < above.depth


@pytest.mark.parametrize("axis, bounds", [("delta_m", (0.9, 0.99)), ("delta_c", (0.01, 0.05))])
def test_phase_boundary_in_delta_against_the_full_engine(axis, bounds):
    threshold = 0.01
    star = analysis.phase_boundary(axis=axis, bounds=bounds, threshold=threshold)
    depths = []
    for d in (star - 2e-3, star + 2e-3):
        s = cpi.simulate(cpi.Config(**{axis: d})).summary()
        depths.append(s.depth)
    assert (depths[0] - threshold) * (depths[1] - threshold) < 0
    assert abs(analysis.inversion_depth(cpi.Config(**{axis: star})) - threshold) < 1e-8


def test_value_rate_effect_against_the_full_engine():
    effect = analysis.value_rate_effect(ratios=(0.0, 0.3))
    full = cpi.simulate(cpi.Config(lr_v=0.3)).summary()
    assert effect[0.3].peak_step == full.peak_step
    assert abs(effect[0.3].final - full.final) < 1e-10
    # Training W_V as well delays the peak and shrinks the fall (C points become C+S-like, Prop. 3).
    assert effect[0.3].peak_step > effect[0.0].peak_step and effect[0.3].depth < effect[0.0].depth


def test_flow_rejects_zero_lr_kq():
    with pytest.raises(ValueError, match="lr_kq"):
        flow.gradient_flow(cpi.Config(lr_kq=0.0))
    assert jnp.isfinite(flow.gradient_flow(cpi.Config(steps=2)).state(2.0)).all()
