"""The reduced engine's CPU compile options (the older XLA fusion emitter, a registered-engine fact): they
speed the program up without changing its results beyond rounding, and an option this XLA does not know
is dropped instead of failing the compile."""

import dataclasses

import jax
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.simulation import _batch, _registry

SUMMARY = ("start", "peak", "peak_step", "final")


OPTION = {"xla_cpu_use_fusion_emitters": False}


def _option_known() -> bool:
    return cpi.simulation.known_compiler_options(OPTION, "cpu") == OPTION


def test_known_compiler_options_keeps_what_xla_knows_and_drops_the_rest():
    """An option this XLA refuses is dropped; the engine's option is kept where this jaxlib knows it (the
    jaxlibs this project supports, 0.10 and 0.11, do: a failure here says a jaxlib dropped it, and the
    engine then runs at XLA's defaults)."""
    kept = cpi.simulation.known_compiler_options({**OPTION, "xla_cpu_no_such_option_here": True}, "cpu")
    assert kept == OPTION
    assert cpi.simulation.known_compiler_options({}, "cpu") == {}
    # a value XLA cannot take is dropped too; a platform this process does not have drops everything
    assert cpi.simulation.known_compiler_options({"xla_cpu_use_fusion_emitters": "maybe"}, "cpu") == {}
    assert cpi.simulation.known_compiler_options(OPTION, "no_such_platform") == {}


def test_known_compiler_options_refuses_a_value_that_is_no_xla_option_value():
    with pytest.raises(cpi.ConfigError, match=r"compiler_options\['xla_cpu_x'\]: must be a bool"):
        cpi.simulation.known_compiler_options({"xla_cpu_x": None}, "cpu")


def test_the_reduced_engine_carries_its_cpu_options_and_the_full_engine_none():
    assert _registry.ENGINES["reduced"].compiler_options["cpu"] == {"xla_cpu_use_fusion_emitters": False}
    assert _registry.ENGINES["full"].compiler_options == {}


def _grid(lr_v: float, n_s: float) -> cpi.ToyParams:
    runs = 24
    base = cpi.ToyParams.from_config(cpi.Config(lr_v=lr_v)).columns()
    columns = {k: np.full(runs, v, dtype=np.float64) for k, v in base.items()}
    columns["lr_kq"] = np.geomspace(0.25, 4.0, runs)
    columns["n_non_context_critical"] = np.arange(runs, dtype=np.float64) % 12
    columns["n_subject_only"] = np.full(runs, n_s)
    return cpi.ToyParams.from_columns(columns, validate=False)


@pytest.mark.parametrize(
    ("lr_v", "n_s"), [(0.0, 0.0), (0.0, 3.0), (0.3, 0.0)], ids=["frozen", "frozen_S", "value"]
)
def test_engine_options_agree_with_xla_defaults(monkeypatch, lr_v, n_s):
    """The engine with its options, and a copy of it without them, on the same runs: within 1e-13, the
    peak at the same step."""
    params = _grid(lr_v, n_s)
    # cpu_kernel=False: the options are the XLA program's (the CPU kernel would otherwise run these runs)
    tuned = cpi.simulate_many(params, steps=400, store_every=0, cpu_kernel=False).summary
    plain_engine = dataclasses.replace(_registry.ENGINES["reduced"], compiler_options={})
    monkeypatch.setitem(_registry.ENGINES, "reduced", plain_engine)
    plain = cpi.simulate_many(params, steps=400, store_every=0, cpu_kernel=False).summary
    for key in SUMMARY:
        a, b = np.asarray(tuned[key], dtype=np.float64), np.asarray(plain[key], dtype=np.float64)
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13, err_msg=key)
    np.testing.assert_array_equal(tuned["peak_step"], plain["peak_step"])


def _fusions(engine) -> int:
    """Fusion kernels in the optimized HLO of ``engine``'s compiled chunk program (frozen regime)."""
    recording = _registry.Recording(100, 1, 0, ("context_reliance",))
    runner = _batch.ChunkRunner.create(engine, recording, n_runs=8)
    bucket = engine.bucket_of(_grid(0.0, 0.0).map(lambda v: v[0]))
    program = _batch.compiled_chunk(engine, bucket, recording, runner.group, runner.mesh)
    columns = _batch.to_devices(_grid(0.0, 0.0).map(lambda v: v[: runner.chunk_size]), runner.mesh)
    return program.lower(columns).compile().as_text().count(" fusion(")


def test_the_options_reach_the_compiled_program():
    """The older emitter splits the step into fewer fusions: a program compiled without the engine's
    options has more (so the options are not silently lost on the way to XLA)."""
    if jax.devices()[0].platform != "cpu" or not _option_known():
        pytest.skip("the option is a CPU one, and this jaxlib must know it")
    tuned = _fusions(_registry.ENGINES["reduced"])
    plain = _fusions(dataclasses.replace(_registry.ENGINES["reduced"], compiler_options={}))
    assert 0 < tuned < plain, (tuned, plain)
