"""Issue 14: every results file reads back, what cannot fit is refused before anything is allocated."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import xarray as xr

import cpi_theory as ct
from cpi_theory.simulation import _memory as memory
from cpi_theory.sweep._results import check_netcdf_limits, load
from cpi_theory.sweep._runner import run_sweep
from cpi_theory.sweep._spec import SweepSpec, sweep_spec

SMALL = {"n_answers": 12, "n_subjects": 10, "n_context_critical": 3, "n_non_context_critical": 3, "steps": 6}


# -- every results file reads back ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "trajectory_every, metrics",
    [
        (0, ["context_reliance"]),  # summaries only: the setting docs/sweeps.md recommends for large sweeps
        (0, ["context_reliance", "per_class_loss"]),
        (None, ["context_reliance"]),  # every recorded step
        (2, ["context_reliance", "attention_context", "per_class_margin"]),
    ],
)
def test_every_sweep_results_file_reads_back_bit_for_bit(tmp_path, trajectory_every, metrics):
    spec = sweep_spec(
        base=SMALL,
        grid={"lr_kq": [0.5, 1.5], "seed": [0, 1]},
        random={"delta_c": {"uniform": [0.1, 0.2]}},
        n_runs=2,
        trajectory_every=trajectory_every,
        trajectory_metrics=metrics,
    )
    out = tmp_path / "sweep.nc"
    ds = run_sweep(spec, out, chunk_size=4, vmap_width=2, keep_chunks=True).dataset
    chunk_files = sorted((tmp_path / "sweep.nc.chunks").glob("chunk_*.nc"))
    assert len(chunk_files) == 2
    for path in [out, *chunk_files]:
        back = load(path)  # the package's documented reader ...
        assert back["final"].size and np.isfinite(back["final"]).all()
        xr.testing.assert_identical(xr.load_dataset(path), back)  # ... is xarray's, as a user calls it
    back = load(out)
    xr.testing.assert_identical(back, ds)
    for name in ds.variables:
        assert back[name].dtype == ds[name].dtype
        a, b = np.asarray(back[name]), np.asarray(ds[name])
        assert a.tolist() == b.tolist() if a.dtype == object else a.tobytes() == b.tobytes(), name
    assert back["final"].dims == ("lr_kq", "seed", "run") and back["delta_c"].dims == ("seed", "run")
    if trajectory_every == 0:
        assert "step" not in back.dims and not set(metrics) & set(back.variables)
    else:
        assert back["context_reliance"].dims == ("lr_kq", "seed", "run", "step")
    # An interrupted summaries-only sweep resumes from its chunk files (they are read back, not redone).
    (tmp_path / "sweep.nc").rename(tmp_path / "done.nc")
    again = run_sweep(spec, out, chunk_size=4, vmap_width=2, resume=True)
    assert again.chunks_computed == 0
    xr.testing.assert_identical(again.dataset, ds)


def test_a_trajectory_file_reads_back_bit_for_bit(tmp_path):
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "cpi_theory.cli", "simulate", "--set", "steps=7", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    traj = ct.simulate({"steps": 7})
    data = json.loads(out.read_text())
    assert ct.Config.from_json_file(str(out)) == traj.config  # the documented reader of its config
    for name in ("context_reliance", "attention_context", "loss"):
        assert np.asarray(data[name], dtype=np.float64).tobytes() == np.asarray(traj.__dict__[name]).tobytes()
    assert (
        data["per_class"]["context_critical"]["margin"]
        == traj.per_class["context_critical"]["margin"].tolist()
    )


# -- memory: refuse what cannot fit, before allocating, naming the key --------------------------------------
def _cli(*args, memory_bytes=16 * 2**30):
    env = {**os.environ, memory.MEMORY_ENV: str(memory_bytes), "JAX_PLATFORMS": "cpu"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cpi_theory.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )
    return done, time.perf_counter() - started


@pytest.mark.parametrize(
    "setting, key, way_out",
    [
        ("n_answers=1e9", "n_answers", "--engine reduced"),
        ("n_answers=30000", "n_answers", "--engine reduced"),
        ("steps=100000000", "steps", "larger record_every"),
    ],
)
def test_simulate_refuses_what_cannot_fit_with_exit_2_naming_the_key(tmp_path, setting, key, way_out):
    out = tmp_path / "t.json"
    done, seconds = _cli("simulate", "--set", setting, "--out", str(out))
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip()
    assert message.startswith(f"cpi-theory simulate: error: {key}: simulate (full engine) needs about ")
    assert "more than this machine's 16 GB" in message and way_out in message
    assert "\n" not in message and "Traceback" not in message
    assert seconds < 20 and not out.exists()


def test_sweep_refuses_what_cannot_fit_with_exit_2_naming_the_key(tmp_path):
    spec = tmp_path / "spec.json"
    out = tmp_path / "s.nc"
    spec.write_text(json.dumps({"base": {"n_answers": 30000}, "grid": {"lr_kq": [0.5, 1.0]}}))
    done, seconds = _cli("sweep", str(spec), "--out", str(out), "--no-progress", "--engine", "full")
    assert done.returncode == 2, done.stderr
    assert "error: base.n_answers: this sweep (full engine) needs about " in done.stderr
    assert "--engine reduced" in done.stderr and "16 GB" in done.stderr and seconds < 20
    # 10^8 runs keeping every step of M_C: ~240 GB of results. Summaries only, ~8 GB: fits 16 GB, not 1 GB.
    grid = {"lr_kq": [1.0 + i for i in range(10_000)], "lr_v": [0.5 + i for i in range(10_000)]}
    spec.write_text(json.dumps({"grid": grid}))
    done, seconds = _cli("sweep", str(spec), "--out", str(out), "--no-progress")
    assert done.returncode == 2 and "error: trajectory_every: " in done.stderr, done.stderr
    assert '"trajectory_every": 0' in done.stderr and seconds < 20
    spec.write_text(json.dumps({"grid": grid, "trajectory_every": 0}))
    done, seconds = _cli("sweep", str(spec), "--out", str(out), "--no-progress", memory_bytes=2**30)
    assert done.returncode == 2 and "error: grid: " in done.stderr and "100000000 runs" in done.stderr
    assert seconds < 20
    assert not out.exists() and not (tmp_path / "s.nc.chunks").exists()


def test_a_chunk_too_large_for_memory_names_a_chunk_size_that_fits(monkeypatch, tmp_path):
    import re

    from cpi_theory.simulation._memory import refuse_unless_fits
    from cpi_theory.sweep._runner import sweep_needs

    limit = 256 * 2**20
    monkeypatch.setenv(memory.MEMORY_ENV, str(limit))
    grid = {"lr_kq": [0.5 + i for i in range(64)]}
    spec = sweep_spec(base={"n_answers": 500, "n_subjects": 400, "steps": 6}, grid=grid)
    with pytest.raises(ct.ConfigError, match=r"a --chunk-size of at most \d+, ") as info:
        # vmap_width None: every run of a device's shard in flight together (as on a GPU), ~78 MB each here
        run_sweep(spec, tmp_path / "s.nc", engine="full", chunk_size=64, vmap_width=None, devices=1)
    assert info.value.key == "base.n_answers" and "more than this machine's 256 MB" in str(info.value)
    assert not list(tmp_path.iterdir())
    suggested = int(re.search(r"at most (\d+)", str(info.value)).group(1))
    assert 1 <= suggested < 64
    refuse_unless_fits("", sweep_needs(spec, "full", suggested, 1, None), limit)  # it does fit
    with pytest.raises(ct.ConfigError):
        refuse_unless_fits("", sweep_needs(spec, "full", 2 * suggested, 1, None), limit)


def test_the_default_chunk_shrinks_to_fit_and_an_explicit_one_is_refused(monkeypatch, tmp_path):
    from cpi_theory.simulation._memory import refuse_unless_fits
    from cpi_theory.simulation._registry import get_engine
    from cpi_theory.sweep._runner import _settings, sweep_needs

    limit = 2 * 2**30
    monkeypatch.setenv(memory.MEMORY_ENV, str(limit))
    grid = {"lr_kq": [1.0 + i for i in range(1000)], "lr_v": [0.5 + i for i in range(1000)]}
    spec = sweep_spec(grid=grid, trajectory_every=0)
    default = get_engine("reduced").default_chunk_size("cpu")
    settings = _settings(spec, "reduced", None, 1, None, None, False)
    assert settings.chunk_size < default  # 10^6 runs: the default chunk's 16 GB estimate does not fit 2 GB
    refuse_unless_fits("", sweep_needs(spec, "reduced", settings.chunk_size, 1, None, streamed=True), limit)
    with pytest.raises(ct.ConfigError, match=r"a --chunk-size of at most \d+") as info:
        _settings(spec, "reduced", default, 1, None, None, False)
    assert info.value.key == "--chunk-size"  # the reduced engine's state does not grow with the vocabulary


def test_what_fits_is_not_refused():
    memory.check_simulate_memory(ct.Config(), "full", available=64 * 2**20)
    memory.check_simulate_memory(ct.Config(n_answers=10**6, n_subjects=10**6), "reduced", available=2**30)
    with pytest.raises(ct.ConfigError) as info:
        memory.check_simulate_memory(ct.Config(n_answers=3000), "full", available=64 * 2**20)
    assert info.value.key == "n_answers" and "64 MB" in str(info.value)


@pytest.mark.parametrize("n_answers, n_subjects, lr_v", [(50, 40, 0.0), (50, 40, 0.1), (400, 300, 0.1)])
def test_the_full_engine_estimate_bounds_what_xla_allocates(n_answers, n_subjects, lr_v):
    from cpi_theory.model._pretrained import pretrained_state
    from cpi_theory.model._train import train
    from cpi_theory.model._world import build_world

    config = ct.Config(n_answers=n_answers, n_subjects=n_subjects, lr_v=lr_v, steps=50)
    world = build_world(config)
    state0 = pretrained_state(world, config.relation_score)
    # Lowered on the leaves: XLA's argument info would not pass the World's run-time shape checks.
    leaves, treedef = jax.tree.flatten((world, state0))

    def run(*leaves):
        return train(
            *jax.tree.unflatten(treedef, leaves), config.lr_kq, config.lr_v, steps=50, record_every=1
        )

    compiled = jax.jit(run).lower(*leaves).compile()
    stats = compiled.memory_analysis()
    xla = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    records = memory.records_bytes(config.steps, config.record_every)
    estimate = memory.run_state_bytes(n_subjects, n_answers, "full") + records
    assert xla <= estimate <= 4 * xla, (xla, estimate)


def test_results_netcdf3_cannot_hold_are_refused_before_any_work():
    spec = SweepSpec.from_mapping({"grid": {"lr_kq": [1.0, 2.0]}})
    check_netcdf_limits(spec, 10**6)  # 301 steps x 8 bytes x 10^6 runs: 2.4 GB, fine
    with pytest.raises(ct.ConfigError, match="below 4 GiB") as info:
        check_netcdf_limits(spec, 2 * 10**6)
    assert info.value.key == "trajectory_every"
    with pytest.raises(ct.ConfigError, match="at most 2147483647") as info:
        check_netcdf_limits(spec, 2**31)
    assert info.value.key == "grid"
