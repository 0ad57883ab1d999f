"""The CPU kernel of the summaries engine (``cpi_theory.reduced._cpu_kernel``, issue 21) against the XLA
program it replaces on CPUs: every regime within 1e-13 with the peak at the same step, the same divergence
steps, results independent of threads and of the padding of the last block, its exponential within one ulp
of NumPy's, Ctrl-C between segments, and the XLA fallback where llvmlite is missing."""

import dataclasses

import mpmath
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.reduced import REGIMES, Regime, _cpu_kernel, regime_of
from cpi_theory.simulation import _batch, _registry

SUMMARY = ("start", "peak", "final", "inversion_depth")


def _columns(regime: Regime, runs: int, seed: int = 0) -> cpi.ToyParams:
    """Runs of ``regime`` with every parameter the step reads varied across them."""
    rng = np.random.default_rng(seed)
    base = cpi.ToyParams.from_config(cpi.Config()).columns()
    columns = {k: np.full(runs, v, dtype=np.float64) for k, v in base.items()}
    columns["lr_kq"] = rng.uniform(0.2, 3.0, runs)
    columns["delta_m"] = rng.uniform(0.65, 0.95, runs)
    columns["delta_c"] = rng.uniform(0.1, 0.3, runs)  # delta_m > 2 delta_c (Assumption 6)
    columns["o_c"] = rng.uniform(-0.5, 0.5, runs)
    columns["o_r"] = rng.uniform(-0.5, 0.5, runs)
    columns["relation_score"] = rng.uniform(0.0, 2.0, runs)
    columns["context_bias"] = rng.uniform(-0.5, 0.5, runs)
    columns["n_non_context_critical"] = rng.integers(0, 12, runs).astype(np.float64)
    columns["n_context_critical"] = rng.integers(1, 12, runs).astype(np.float64)
    columns["lr_v"] = rng.uniform(0.1, 0.5, runs) if regime.value_trained else np.zeros(runs)
    columns["n_subject_only"] = rng.integers(1, 5, runs) * 1.0 if regime.has_s else np.zeros(runs)
    columns["n_counterfactual_augmented"] = (
        rng.integers(1, 4, runs) * 1.0 if regime.has_aug else np.zeros(runs)
    )
    params = cpi.ToyParams.from_columns(columns)
    assert regime_of(params) == regime
    return params


def _both(params, steps, **kw):
    kernel = cpi.simulate_many(params, steps=steps, store_every=0, **kw)
    xla = cpi.simulate_many(params, steps=steps, store_every=0, cpu_kernel=False, **kw)
    assert any("CPU kernel" in b for b in kernel.buckets) and not any("CPU kernel" in b for b in xla.buckets)
    return kernel.summary, xla.summary


def _assert_agree(kernel, xla):
    for key in SUMMARY:
        a, b = np.asarray(kernel[key]), np.asarray(xla[key])
        assert np.all(np.isfinite(a)), key
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13, err_msg=key)
    for key in ("peak_step", "diverged", "diverged_step"):
        np.testing.assert_array_equal(kernel[key], xla[key], err_msg=key)


@pytest.mark.parametrize("regime", REGIMES, ids=lambda r: r.name)
def test_every_regime_agrees_with_the_xla_program_to_1e13(regime):
    """Runs that rise and fall (and some that only rise) over 300 steps: start, peak, final and depth within
    1e-13, the peak at the same step."""
    runs = 12 if regime.value_trained else 100  # not a multiple of the lanes: the last block is padded
    kernel, xla = _both(_columns(regime, runs), steps=300)
    _assert_agree(kernel, xla)
    assert np.any(np.asarray(kernel["inversion_depth"]) > 1e-3)  # the grid holds real inversions


@pytest.mark.parametrize("record_every", [1, 7])
@pytest.mark.parametrize("steps", [0, 1, 65])
def test_recording_and_short_runs_agree(record_every, steps):
    params = _columns(Regime(False, False, False), 70, seed=1)
    kernel, xla = _both(params, steps=steps, record_every=record_every)
    _assert_agree(kernel, xla)


def test_divergence_is_reported_at_the_same_step():
    """Non-finite parameters (validation off) make runs non-finite at step 0 or 1, or overflow the value
    logits: the kernel flags the same runs at the same steps."""
    params = _columns(Regime(False, False, False), 9, seed=2)
    columns = params.columns()
    columns["delta_m"][0] = 1.0  # lambda_M = inf
    columns["lr_kq"][1] = np.inf
    columns["relation_score"][2] = np.nan  # the initial state
    columns["o_c"][3] = 800.0  # exp overflows
    columns["lr_kq"][4] = 1e308
    params = cpi.ToyParams.from_columns(columns, validate=False)
    kernel, xla = _both(params, steps=40, check=False)
    np.testing.assert_array_equal(kernel["diverged_step"], xla["diverged_step"])
    assert list(np.asarray(kernel["diverged"])[:5]) == [True, True, True, True, False]
    fine = ~np.asarray(xla["diverged"])
    for key in ("start", "peak", "final"):
        np.testing.assert_allclose(kernel[key][fine], xla[key][fine], rtol=0, atol=1e-13)


def test_results_do_not_depend_on_threads_segments_or_padding(monkeypatch):
    kernel = _cpu_kernel.summary_kernel(Regime(False, False, False))
    params = _columns(Regime(False, False, False), 300, seed=3).map(np.asarray)
    one = kernel.run(params, steps=200, threads=1)
    monkeypatch.setattr(_cpu_kernel, "SEGMENT_CONFIG_STEPS", 1000)  # many segments of a few steps
    three = kernel.run(params, steps=200, threads=3)
    alone = kernel.run(params.map(lambda c: c[7:8]), steps=200, threads=1)  # one run: 63 padding lanes
    for key in ("start", "peak", "peak_step", "final", "final_loss"):
        np.testing.assert_array_equal(one[key], three[key], err_msg=key)
        np.testing.assert_array_equal(one[key][7:8], alone[key], err_msg=key)


def test_ctrl_c_between_segments_stops_the_kernel(monkeypatch):
    kernel = _cpu_kernel.summary_kernel(Regime(False, False, False))
    params = _columns(Regime(False, False, False), 64, seed=4).map(np.asarray)
    monkeypatch.setattr(_cpu_kernel, "SEGMENT_CONFIG_STEPS", 64 * 10)
    calls = []

    def interrupted():
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_cpu_kernel, "raise_if_interrupted", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kernel.run(params, steps=10_000, threads=2)
    assert len(calls) == 3  # stopped after the third segment, not after 1,000


def test_the_exponential_is_within_one_ulp_of_numpys():
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-708.39, 709.78, 200_001), rng.uniform(-40, 40, 100_000)])
    got, want = _cpu_kernel.vector_exp(x), np.exp(x)
    assert np.max(np.abs(got - want) / want) <= 2.3e-16
    special = np.array([0.0, 1.0, np.inf, -np.inf, np.nan, 709.8, -708.5, -1000.0])
    got = _cpu_kernel.vector_exp(special)
    assert got[0] == 1.0 and got[1] == np.exp(1.0) and got[2] == np.inf and got[3] == 0.0
    assert np.isnan(got[4]) and got[5] == np.inf and got[6] == 0.0 and got[7] == 0.0  # subnormal: 0, as XLA


def test_the_exponentials_coefficients_are_the_chebyshev_interpolant():
    """Recomputed at 50 digits: the polynomial through exp at the Chebyshev nodes of the interval."""
    mpmath.mp.dps = 50
    lo, hi = (mpmath.log(2) * c for c in _cpu_kernel.EXP_INTERVAL)
    n = len(_cpu_kernel.EXP_COEFFICIENTS)
    nodes = [(lo + hi) / 2 + (hi - lo) / 2 * mpmath.cos(mpmath.pi * (2 * i + 1) / (2 * n)) for i in range(n)]
    matrix = mpmath.matrix([[x**j for j in range(n)] for x in nodes])
    exact = mpmath.lu_solve(matrix, mpmath.matrix([mpmath.e**x for x in nodes]))
    assert _cpu_kernel.EXP_COEFFICIENTS == tuple(float(exact[j]) for j in range(n))


@pytest.mark.parametrize("regime", [Regime(False, True, True), Regime(True, False, False)], ids=str)
def test_the_traced_graph_is_the_generated_code(regime):
    """The graph the kernel is built from, evaluated with NumPy at random states, equals the generated JAX
    functions there (the velocity, the loss and the probe gap)."""
    from cpi_theory.reduced import minimal_state_names, minimal_velocity, symbol_values
    from cpi_theory.reduced._minimal import probe_gap_fn

    graph, velocity, loss, gap = _cpu_kernel._trace(regime)
    params = _columns(regime, 16, seed=6)
    rng = np.random.default_rng(7)
    state = [rng.normal(0, 0.5, 16) for _ in minimal_state_names(regime)]
    host = _cpu_kernel.host_symbols(params)
    values = _cpu_kernel._evaluate(graph, (*velocity, loss, gap), host, state)
    v, want_loss = minimal_velocity(regime)(tuple(state), params)
    for k, node in enumerate(velocity):
        np.testing.assert_allclose(values[node], np.asarray(v[k]), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(values[loss], np.asarray(want_loss), rtol=1e-14)
    want_gap = probe_gap_fn(regime)(tuple(state), symbol_values(params))
    np.testing.assert_allclose(values[gap], np.asarray(want_gap), rtol=1e-14, atol=1e-15)


def test_without_llvmlite_the_xla_program_runs(monkeypatch):
    """Where the kernel cannot be built (summary_kernel returns None), simulate_many runs XLA's program."""
    monkeypatch.setattr(_registry, "summary_kernel", lambda regime: None)
    _batch._kernel_of.cache_clear()
    try:
        params = _columns(Regime(False, False, False), 10, seed=8)
        batch = cpi.simulate_many(params, steps=50, store_every=0)
        assert batch.buckets == ("frozen",)
        assert np.all(np.isfinite(batch.summary["peak"]))
    finally:
        _batch._kernel_of.cache_clear()


@pytest.mark.parametrize("regime", [Regime(False, False, False), Regime(True, True, False)], ids=str)
@pytest.mark.parametrize(("steps", "every"), [(300, 100), (301, 100), (50, 7), (0, 5)])
def test_stored_context_reliance_agrees_with_the_xla_program(regime, steps, every):
    """M_C stored every ``every`` steps (and at the last) on the kernel: the same steps, within 1e-13."""
    params = _columns(regime, 20, seed=9)
    kernel = cpi.simulate_many(params, steps=steps, store_every=every)
    xla = cpi.simulate_many(params, steps=steps, store_every=every, cpu_kernel=False)
    assert "CPU kernel" in kernel.buckets[0] and "CPU kernel" not in xla.buckets[0]
    np.testing.assert_array_equal(kernel.stored_steps, xla.stored_steps)
    a, b = kernel.trajectory["context_reliance"], xla.trajectory["context_reliance"]
    assert a.shape == b.shape == (20, xla.stored_steps.size)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    _assert_agree(kernel.summary, xla.summary)


def test_other_stored_metrics_and_the_full_engine_keep_xla():
    recording = _registry.Recording(10, 1, 5, ("context_reliance", "loss"))
    reduced = _registry.ENGINES["reduced"]
    assert reduced.cpu_kernel.for_engine(reduced, (False, False, False), recording) is None
    assert _registry.ENGINES["full"].cpu_kernel is None
    runner = _batch.ChunkRunner.create(
        "reduced", dataclasses.replace(recording, metrics=("context_reliance",))
    )
    assert runner.kernel((False, False, False)) is not None
    assert runner.describe((False, False, False)) == "frozen on the CPU kernel"


def test_a_sweep_names_the_kernel_and_is_never_resumed_across_paths(tmp_path):
    from cpi_theory.sweep import SweepSpec, run_sweep

    spec = SweepSpec.from_mapping(
        {"base": {"steps": 30}, "grid": {"lr_kq": [0.5, 1.0]}, "trajectory_every": 0}
    )
    xla = run_sweep(spec, tmp_path / "xla.nc", cpu_kernel=False).dataset
    kernel = run_sweep(spec, tmp_path / "kernel.nc").dataset
    assert "cpu-kernel" not in xla.attrs["fingerprint"] and "CPU kernel" not in xla.attrs["computed_by"]
    assert kernel.attrs["fingerprint"].endswith("|cpu-kernel:frozen")
    assert "frozen on the CPU kernel" in kernel.attrs["computed_by"]
    np.testing.assert_allclose(kernel["peak"], xla["peak"], rtol=0, atol=1e-13)
    with pytest.raises(cpi.ConfigError, match="CPU kernel"):
        run_sweep(spec, tmp_path / "xla.nc", resume=True)  # finished by XLA's program: not the kernel's


def test_an_engine_derived_with_another_batch_run_does_not_run_the_kernel():
    """The kernel is the fast form of the reduced engine's batch_run only: an engine made from it with
    dataclasses.replace and another batch_run runs that batch_run."""
    recording = _registry.Recording(10, 1, 0, ("context_reliance",))
    derived = dataclasses.replace(_registry.REDUCED, batch_run=lambda b, r: _registry.REDUCED.batch_run(b, r))
    assert _batch.ChunkRunner.create(derived, recording).kernel((False, False, False)) is None
    assert _batch.ChunkRunner.create(_registry.REDUCED, recording).kernel((False, False, False)) is not None


def test_a_plateau_peaks_at_its_first_step():
    """lr_kq = 0: M_C never moves, so the first maximum is step 0 on both paths (a kernel that kept the last
    maximum would say the last step)."""
    params = _columns(Regime(False, False, False), 10, seed=10)
    columns = params.columns()
    columns["lr_kq"][:] = 0.0
    params = cpi.ToyParams.from_columns(columns, validate=False)
    kernel, xla = _both(params, steps=50, check=False)
    assert np.all(kernel["peak_step"] == 0) and np.all(xla["peak_step"] == 0)
    _assert_agree({**kernel, "inversion_depth": kernel["inversion_depth"]}, xla)


def test_the_raw_summary_fields_agree_with_the_xla_program():
    """Every field the engine hands back (not only the batch's derived ones), one run per thread and several
    segments, with M_C stored: first_nonfinite_reliance and first_nonfinite_step included."""
    regime = Regime(False, False, False)
    params = _columns(regime, 132, seed=11)
    columns = params.columns()
    columns["delta_m"][5] = 1.0  # a run that is not finite from its first step
    params = cpi.ToyParams.from_columns(columns, validate=False)
    recording = _registry.Recording(120, 4, 40, ("context_reliance",))
    runner = _batch.ChunkRunner.create("reduced", recording, chunk_size=132, cpu_kernel=False)
    xla = _batch.to_host(runner.launch((False, False, False), params.map(np.asarray)), 132)
    kernel = _cpu_kernel.summary_kernel(regime)
    import unittest.mock

    with unittest.mock.patch.object(_cpu_kernel, "SEGMENT_CONFIG_STEPS", 132 * 7):
        got = kernel.run(params.map(np.asarray), steps=120, record_every=4, store_every=40, threads=3)
    for key, value in xla.summary.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-13, err_msg=key)
    np.testing.assert_array_equal(got["first_nonfinite_step"], xla.first_nonfinite_step)
    assert got["first_nonfinite_step"][5] >= 0 and got["first_nonfinite_reliance"][5] >= 0
    np.testing.assert_allclose(
        got["context_reliance"], xla.trajectory["context_reliance"], rtol=0, atol=1e-13
    )
