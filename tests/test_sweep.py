"""Sweeps: runs equal individual simulations, specs are validated up front, sharding, files, divergence."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import cpi_theory as ct
from cpi_theory.simulation import _registry as registry
from cpi_theory.sweep._results import load
from cpi_theory.sweep._runner import run_sweep
from cpi_theory.sweep._spec import SweepSpec, build_run_table, sweep_spec

# A small world keeps compilation and compute short; the sweep code does not care about sizes.
SMALL = {"n_answers": 12, "n_subjects": 10, "n_context_critical": 3, "n_non_context_critical": 3, "steps": 12}


def test_grid_runs_equal_individual_simulations():
    spec = sweep_spec(
        base=SMALL,
        grid={"lr_kq": [0.5, 2.0], "n_non_context_critical": [0, 3], "lr_v": [0.0, 0.3]},
        trajectory_metrics=["context_reliance", "loss", "per_class_margin"],
    )
    result = run_sweep(spec, engine="full", chunk_size=4, vmap_width=2)
    ds = result.dataset
    assert dict(ds.sizes) == {"lr_kq": 2, "n_non_context_critical": 2, "lr_v": 2, "step": 13, "data_class": 4}
    # 6 and 3 training points, each with W_V frozen (lr_v = 0) or trained: one compilation per bucket.
    assert result.n_buckets == 4
    assert result.compilations <= 4
    for lr_kq in (0.5, 2.0):
        for n_cs in (0, 3):
            for lr_v in (0.0, 0.3):
                traj = ct.simulate({**SMALL, "lr_kq": lr_kq, "n_non_context_critical": n_cs, "lr_v": lr_v})
                run = ds.sel(lr_kq=lr_kq, n_non_context_critical=n_cs, lr_v=lr_v)
                np.testing.assert_allclose(run.context_reliance, traj.context_reliance, rtol=0, atol=1e-13)
                np.testing.assert_allclose(run.loss, traj.loss, rtol=1e-13, atol=0)
                margin = run.per_class_margin.sel(data_class="context_critical")
                np.testing.assert_allclose(margin, traj.per_class["context_critical"]["margin"], rtol=1e-11)
                summary = traj.summary()
                assert int(run.peak_step) == summary.peak_step
                for name in ("start", "peak", "final"):
                    assert float(run[name]) == pytest.approx(getattr(summary, name), abs=1e-13)
                assert float(run.inversion_depth) == pytest.approx(summary.depth, abs=1e-13)
                assert not bool(run.diverged) and int(run.diverged_step) == -1


def test_random_spec_draws_are_seeded_labelled_and_validated():
    data = {
        "base": SMALL,
        "random": {
            "delta_c": {"uniform": [0.05, 0.25]},
            "lr_kq": {"log_uniform": [0.1, 10.0]},
            "n_non_context_critical": {"uniform": [0, 3]},
            "o_c": {"choice": [0.0, 0.5]},
        },
        "n_runs": 50,
        "seed": 7,
    }
    table = build_run_table(SweepSpec.from_mapping(data))
    again = build_run_table(SweepSpec.from_mapping(data))
    other = build_run_table(SweepSpec.from_mapping({**data, "seed": 8}))
    assert table.dims == (("run", 50),)
    assert [c.to_dict() for c in table.configs] == [c.to_dict() for c in again.configs]
    assert [c.lr_kq for c in table.configs] != [c.lr_kq for c in other.configs]
    lr = np.asarray([c.lr_kq for c in table.configs])
    assert lr.min() >= 0.1 and lr.max() <= 10.0
    counts = {c.n_non_context_critical for c in table.configs}
    assert counts <= {0, 1, 2, 3} and all(isinstance(n, int) for n in counts)
    assert {c.o_c for c in table.configs} <= {0.0, 0.5}
    np.testing.assert_array_equal(table.coords["lr_kq"][1], lr)
    # Dropping a key leaves the other keys' draws as they were (one stream per key).
    fewer = {**data, "random": {k: v for k, v in data["random"].items() if k != "o_c"}}
    np.testing.assert_array_equal(build_run_table(SweepSpec.from_mapping(fewer)).coords["lr_kq"][1], lr)

    # A grid over seeds gives one independent set of draws per seed: coordinates over (seed, run).
    seeded = build_run_table(SweepSpec.from_mapping({**data, "grid": {"seed": [7, 8]}, "n_runs": 5}))
    assert seeded.dims == (("seed", 2), ("run", 5))
    assert seeded.coords["lr_kq"][0] == ("seed", "run")
    np.testing.assert_array_equal(seeded.coords["lr_kq"][1][0], lr[:5])


def test_random_sweep_dataset_has_a_run_dimension(tmp_path):
    spec = SweepSpec.from_mapping(
        {"base": {**SMALL, "steps": 6}, "random": {"lr_kq": {"uniform": [0.5, 2.0]}}, "n_runs": 3, "seed": 1}
    )
    ds = run_sweep(spec, chunk_size=4, vmap_width=2).dataset
    assert ds.context_reliance.dims == ("run", "step")
    for i in range(3):
        lr = float(ds.lr_kq[i])
        traj = ct.simulate({**SMALL, "steps": 6, "lr_kq": lr})
        np.testing.assert_allclose(ds.context_reliance[i], traj.context_reliance, rtol=0, atol=1e-13)


def test_toml_spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text("seed = 3\n[base]\nsteps = 5\n[grid]\nlr_kq = [0.5, 1.0]\n")
    spec = SweepSpec.from_file(path)
    assert spec.base.steps == 5 and spec.grid == (("lr_kq", (0.5, 1.0)),) and spec.seed == 3


BAD_SPECS = [
    ({"grid": {"learning_rate": [1.0]}}, "learning_rate"),
    ({"grid": {"lr_kq": []}}, "lr_kq"),
    ({"grid": {"delta_c": [0.1, 1.5]}}, "delta_c"),
    ({"grid": {"delta_m": [0.3]}, "base": {"delta_c": 0.2}}, "delta_m"),
    ({"base": {"n_subjects": 15}, "grid": {"n_context_critical": [5, 20]}}, "n_subjects"),
    (
        {"grid": {"n_answers": [10, 50]}, "base": {"n_context_critical": 10, "n_non_context_critical": 10}},
        "n_answers",
    ),
    ({"grid": {"steps": [10, 20]}}, "steps"),
    ({"grid": {"n_context_critical": [2.5]}}, "n_context_critical"),
    ({"random": {"lr_kq": {"uniform": [2.0, 1.0]}}, "n_runs": 3}, "lr_kq"),
    ({"random": {"lr_kq": {"gaussian": [0, 1]}}, "n_runs": 3}, "lr_kq"),
    ({"random": {"lr_kq": {"uniform": [0.1, 1.0]}}}, "n_runs"),
    ({"grid": {"lr_kq": [1.0, 1.0]}}, "lr_kq"),
    ({"grid": {"lr_kq": [1.0]}, "random": {"lr_kq": {"choice": [1.0]}}, "n_runs": 2}, "lr_kq"),
    ({"base": {"lr_v": -1.0}}, "lr_v"),
    ({"grids": {"lr_kq": [1.0]}}, "grids"),
    ({"trajectory_metrics": ["attention"]}, "trajectory_metrics"),
]


@pytest.mark.parametrize("data, key", BAD_SPECS)
def test_bad_specs_are_rejected_naming_the_key(data, key):
    with pytest.raises(ct.ConfigError) as info:
        build_run_table(SweepSpec.from_mapping(data))
    assert info.value.key == key


def test_sharded_equals_unsharded():
    assert len(jax.devices()) == 4  # conftest's simulated CPU devices
    spec = sweep_spec(base=SMALL, grid={"lr_kq": [0.5, 1.0, 2.0, 4.0], "lr_v": [0.0, 0.2]})
    sharded = run_sweep(spec, chunk_size=8, vmap_width=2)
    single = run_sweep(spec, chunk_size=8, vmap_width=2, devices=1)
    assert (sharded.n_devices, single.n_devices) == (4, 1)
    for name in sharded.dataset.data_vars:
        a, b = sharded.dataset[name].values, single.dataset[name].values
        if a.dtype.kind == "f":
            # XLA's CPU kernels may split a product differently with fewer devices: last-bit differences.
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
        else:
            np.testing.assert_array_equal(a, b)


def test_netcdf_file_round_trips_bit_for_bit_and_refuses_overwrite(tmp_path):
    spec = sweep_spec(
        base={**SMALL, "steps": 8}, grid={"lr_kq": [0.5, 1.5], "n_non_context_critical": [0, 3]}
    )
    out = tmp_path / "sweep.nc"
    ds = run_sweep(spec, out, chunk_size=4, vmap_width=2).dataset
    assert not (tmp_path / "sweep.nc.chunks").exists()  # chunks are removed after the final write
    back = load(out)
    xr.testing.assert_identical(back, ds)
    for name in ds.variables:
        assert back[name].dtype == ds[name].dtype
        assert np.asarray(back[name]).tobytes() == np.asarray(ds[name]).tobytes()
    assert json.loads(back.attrs["cpi_theory_sweep_spec"]) == spec.to_mapping()
    with pytest.raises(ct.ConfigError) as info:
        run_sweep(spec, out, chunk_size=4, vmap_width=2)
    assert info.value.key == "--out"
    # --resume of a finished sweep returns it without recomputing; a different spec is refused.
    again = run_sweep(spec, out, chunk_size=4, vmap_width=2, resume=True)
    assert again.chunks_computed == 0
    xr.testing.assert_identical(again.dataset, ds)
    other = sweep_spec(base={**SMALL, "steps": 8}, grid={"lr_kq": [0.5, 2.5]})
    with pytest.raises(ct.ConfigError) as info:
        run_sweep(other, out, chunk_size=4, vmap_width=2, resume=True)
    assert info.value.key == "--resume"


def _exploding_batch_run(bucket, recording):
    """A stand-in engine: x <- x * (1 + lr) overflows to inf (and loss to NaN) for large lr."""
    del bucket
    return lambda params: _exploding_run(params.lr_kq, recording)


def _exploding_run(lr, recording):
    steps = recording.steps

    def body(carry, _):
        x, t, first_bad = carry
        loss = x - x + jnp.log(x)  # inf - inf = NaN once x overflows
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), t, first_bad)
        x = x * (1.0 + lr)
        return (x, t + 1, first_bad), (jax.nn.sigmoid(-1.0 / x), loss)

    init = (jnp.asarray(1.0, dtype=jnp.float64), jnp.asarray(0, jnp.int32), jnp.asarray(-1, jnp.int32))
    (x, _, first_bad), (mc, loss) = jax.lax.scan(body, init, None, length=steps)
    mc = jnp.concatenate([mc, jax.nn.sigmoid(-1.0 / x)[None]])
    loss = jnp.concatenate([loss, (x - x + jnp.log(x))[None]])
    summary = registry.summary_of_records(mc, loss, recording.recorded_steps)
    return registry.RunOutput(summary, first_bad, {"context_reliance": mc})


def test_diverged_runs_are_flagged_not_fatal(monkeypatch):
    fake = dataclasses.replace(
        registry.REDUCED,
        name="exploding",
        run_config=None,
        bucket_reads=(),
        bucket_columns=lambda columns: (),
        bucket_key=lambda row: (),
        batch_run=_exploding_batch_run,
        describe=lambda bucket: "x <- x (1 + lr)",
    )
    monkeypatch.setitem(registry.ENGINES, "exploding", fake)
    spec = sweep_spec(
        base={"steps": 40}, grid={"lr_kq": [0.1, 1e100]}, trajectory_metrics=["context_reliance"]
    )
    ds = run_sweep(spec, engine="exploding", chunk_size=4).dataset
    ok, bad = ds.sel(lr_kq=0.1), ds.sel(lr_kq=1e100)
    assert not bool(ok.diverged) and int(ok.diverged_step) == -1 and np.isfinite(float(ok.peak))
    assert bool(bad.diverged) and int(bad.diverged_step) == 4  # 1e100^4 overflows float64
    assert all(np.isnan(float(bad[name])) for name in ("start", "peak", "final", "inversion_depth"))
    assert int(bad.peak_step) == -1


def test_chunks_bucket_by_shape_and_pad():
    spec = sweep_spec(base=SMALL, grid={"n_context_critical": [1, 2, 3], "n_non_context_critical": [0, 1, 2]})
    table = build_run_table(spec)
    from cpi_theory.sweep._plan import plan_chunks

    chunks = plan_chunks(table, registry.FULL, chunk_size=2)
    # Buckets by total point count (1..5) and frozen W_V (lr_v = 0 in SMALL); the class split does not
    # change shapes.
    assert sorted({c.bucket for c in chunks}) == [(10, 12, n, True) for n in (1, 2, 3, 4, 5)]
    assert sorted(np.concatenate([c.runs for c in chunks]).tolist()) == list(range(9))
    assert all(c.runs.size <= 2 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert dataclasses.is_dataclass(chunks[0])


def test_reduced_engine_sweep_is_one_bucket_per_regime_and_equals_the_full_engine():
    # Vocabulary and class sizes change no shape in the reduced engine: one bucket (and compilation) per
    # regime (here W_V frozen or trained), and real class sizes (mixture weights) are accepted there, not in
    # the full engine.
    spec = sweep_spec(
        base=SMALL,
        grid={"n_answers": [12, 20], "n_non_context_critical": [0, 1.5, 3], "lr_v": [0.0, 0.3]},
        trajectory_metrics=["context_reliance", "loss"],
    )
    result = run_sweep(spec, engine="reduced", chunk_size=16)
    assert result.n_buckets == 2 and result.compilations <= 2
    assert "frozen, value" in result.dataset.attrs["computed_by"]
    ds = result.dataset
    for n_answers in (12, 20):
        for n_cs in (0, 3):
            for lr_v in (0.0, 0.3):
                config = {**SMALL, "n_answers": n_answers, "n_non_context_critical": n_cs, "lr_v": lr_v}
                traj = ct.simulate(config)
                run = ds.sel(n_answers=n_answers, n_non_context_critical=n_cs, lr_v=lr_v)
                np.testing.assert_allclose(run.context_reliance, traj.context_reliance, rtol=0, atol=1e-12)
                np.testing.assert_allclose(run.loss, traj.loss, rtol=1e-12)
    mixed = ds.sel(n_non_context_critical=1.5)
    assert np.isfinite(mixed.peak).all() and not mixed.diverged.any()
    with pytest.raises(ct.ConfigError) as info:
        build_run_table(spec, engine="full")
    assert info.value.key == "n_non_context_critical"


# -- planning without a Config per run ---------------------------------------------------------------------
# Grids that cross every Config rule: vocabulary sizes too small for some class counts, delta_m <= 2 delta_c,
# out-of-range values, empty training sets and (for the full engine) real class sizes.
RULE_GRIDS = [
    {
        "n_answers": [2, 8, 12, 30],
        "n_subjects": [1, 6, 10],
        "n_context_critical": [0, 2, 3],
        "n_non_context_critical": [0, 1.5, 3],
        "n_counterfactual_augmented": [0, 2],
    },
    {"delta_c": [0.05, 0.2, 0.3, 0.999], "delta_m": [0.3, 0.41, 0.6, 0.9999], "o_c": [-700.0, 0.0, 700.0]},
    {"n_subject_only": [0, 1, 2.5], "n_subjects": [8, 9, 10], "lr_v": [0.0, 0.5]},
]


@pytest.mark.parametrize("engine", ["full", "reduced"])
@pytest.mark.parametrize("grid", RULE_GRIDS)
def test_the_column_rules_accept_exactly_the_runs_config_accepts(grid, engine):
    from cpi_theory.sweep._spec import RunTable, draw_random, first_invalid_run, valid_runs

    base = {"n_answers": 12, "n_subjects": 10, "n_context_critical": 3, "n_non_context_critical": 3}
    spec = SweepSpec.from_mapping({"base": base, "grid": grid})
    table = RunTable(spec=spec, engine=engine, draws={0: draw_random(spec, 0)}, dims=spec.dims, coords={})
    accepted = []
    for run in range(table.n_total):
        try:
            table.config(run)
            accepted.append(True)
        except ct.ConfigError:
            accepted.append(False)
    assert 0 < sum(accepted) < len(accepted)  # the grid crosses the rules both ways
    np.testing.assert_array_equal(valid_runs(table, np.arange(table.n_total)), accepted)
    assert first_invalid_run(table) == accepted.index(False)


def test_random_draws_are_validated_by_the_column_rules():
    from cpi_theory.sweep._spec import valid_runs

    data = {
        "base": SMALL,
        "random": {"n_answers": {"uniform": [2, 14]}, "delta_m": {"uniform": [0.3, 0.7]}},
        "grid": {"seed": [0, 1]},
        "n_runs": 40,
    }
    spec = SweepSpec.from_mapping(data)
    with pytest.raises(ct.ConfigError) as info:
        build_run_table(spec)
    # Config itself names the key and the first run (C order over (seed, run)) that breaks a rule.
    from cpi_theory.sweep._spec import RunTable, draw_random

    table = RunTable(spec, "full", {s: draw_random(spec, s) for s in (0, 1)}, spec.dims, {})
    first = next(i for i in range(table.n_total) if not valid_runs(table, np.asarray([i]))[0])
    with pytest.raises(ct.ConfigError) as expected:
        table.config(first)
    assert str(info.value) == str(expected.value) and "(in the run with" in str(info.value)


def _plan_from_one_config_per_run(table, engine, chunk_size):
    """The plan as it was made before planning was vectorized: a Config (and a bucket key) per run."""
    buckets: dict[tuple, list[int]] = {}
    for i in range(table.n_total):
        buckets.setdefault(engine.bucket_of(ct.ToyParams.from_config(table.config(i))), []).append(i)
    chunks = []
    for key in sorted(buckets):
        runs = np.asarray(buckets[key])
        for start in range(0, runs.size, chunk_size):
            chunks.append((len(chunks), key, runs[start : start + chunk_size].tolist()))
    return chunks


@pytest.mark.parametrize(
    "grid",
    [
        {"n_context_critical": [1, 2, 3], "lr_kq": [0.5, 1.0], "lr_v": [0.0, 0.1, 0.2]},
        {"lr_v": [0.0, 0.3], "n_answers": [12, 20], "lr_kq": [1.0, 2.0, 3.0], "n_subjects": [10, 12]},
        {"lr_kq": [0.5, 1.0, 2.0, 4.0, 8.0]},
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_vectorized_plan_equals_the_plan_of_one_config_per_run(grid, chunk_size):
    from cpi_theory.sweep._plan import ChunkPlan

    table = build_run_table(sweep_spec(base=SMALL, grid=grid))
    expected = _plan_from_one_config_per_run(table, registry.FULL, chunk_size)
    plan = ChunkPlan(table, registry.FULL, chunk_size)
    for block in (5, None):  # a small block carries buckets' runs across blocks
        got = sorted((c.index, c.bucket, c.runs.tolist()) for c in plan.chunks(block=block))
        assert got == expected
    assert plan.n_chunks == len(expected)
    assert plan.chunk_lengths().tolist() == [len(runs) for _, _, runs in expected]
    # The column form of the bucket key is the engine's own, run by run.
    ids = plan.bucket_ids(np.arange(table.n_total))
    configs = [ct.ToyParams.from_config(c) for c in table.configs]
    assert [plan.buckets[i] for i in ids] == [registry.FULL.bucket_of(c) for c in configs]


def test_a_hundred_million_run_grid_plans_in_seconds_in_bounded_memory():
    import time
    import tracemalloc

    from cpi_theory.sweep._plan import ChunkPlan

    grid = {"lr_kq": [1.0 + i for i in range(10_000)], "lr_v": [0.001 * i for i in range(10_000)]}
    tracemalloc.start()
    started = time.perf_counter()
    spec = SweepSpec.from_mapping({"grid": grid, "trajectory_every": 0})
    table = build_run_table(spec)
    plan = ChunkPlan(table, registry.FULL, 256)
    chunks = plan.chunks()
    first, second = next(chunks), next(chunks)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert table.n_total == 10**8 and seconds < 20 and peak < 256 * 2**20, (seconds, peak)
    # Two buckets (W_V trained, W_V frozen at lr_v = 0, every 10,000th run), in sorted order.
    assert [key[-1] for key in plan.buckets] == [False, True]
    assert plan.bucket_sizes == (10**8 - 10**4, 10**4)
    assert plan.n_chunks == math.ceil((10**8 - 10**4) / 256) + math.ceil(10**4 / 256)
    assert (first.index, first.runs.tolist()) == (0, list(range(1, 257)))
    assert (second.index, second.runs[0]) == (1, 257)
    assert table.config(10**4).lr_v == 0.0 and table.config(10**4).lr_kq == 2.0


def test_an_empty_spec_is_refused_naming_grid():
    for data in ({}, {"base": SMALL}, {"grid": {}}, {"random": {}}):
        with pytest.raises(ct.ConfigError, match="sweeps nothing") as info:
            SweepSpec.from_mapping(data)
        assert info.value.key == "grid"
