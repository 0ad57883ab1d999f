"""The door for many runs: a device's groups of runs change only speed and rounding; CPU devices per core."""

import subprocess
import sys

import numpy as np
import pytest

import cpi_theory as ct
from cpi_theory.simulation import get_engine
from cpi_theory.simulation._registry import usable_cores


def _runs(n: int, lr_v: float) -> ct.ToyParams:
    rng = np.random.default_rng(0)
    base = ct.ToyParams.from_config(ct.Config(lr_v=lr_v))
    return base.with_columns(
        lr_kq=rng.uniform(0.5, 2.0, n),
        delta_m=rng.uniform(0.6, 0.9, n),
        context_bias=rng.normal(0, 1, n),
    )


@pytest.mark.parametrize("lr_v", [0.0, 0.3])
def test_groups_of_runs_change_only_the_last_bit(lr_v):
    params = _runs(37, lr_v)  # not a multiple of any group or device count: padding is exercised
    whole = ct.simulate_many(params, steps=40, store_every=20, group=None)
    for group in (1, 1024):
        grouped = ct.simulate_many(params, steps=40, store_every=20, group=group)
        # XLA's CPU kernels round a vector of runs and a single run differently in the last bit (1 ulp seen).
        for name, value in {**whole.summary, **whole.trajectory}.items():
            got = {**grouped.summary, **grouped.trajectory}[name]
            np.testing.assert_allclose(got, value, rtol=1e-14, atol=1e-15, err_msg=f"{name}, group {group}")
        np.testing.assert_array_equal(grouped.summary["peak_step"], whole.summary["peak_step"])
    assert np.all(np.isfinite(whole.summary["peak"])) and whole.summary["peak"].shape == (37,)


def test_a_device_with_a_core_to_itself_advances_cache_sized_groups():
    reduced, full = get_engine("reduced"), get_engine("full")
    cores = usable_cores()
    assert reduced.default_group_size("cpu", cores) == reduced.core_group_size == 1024
    assert reduced.default_group_size("gpu", cores) is None  # an accelerator advances its whole shard
    if cores > 1:
        assert (
            reduced.default_group_size("cpu", 1) is None
        )  # one device for many cores: XLA's threads split it
    assert full.default_group_size("cpu", cores) == full.default_group_size("cpu", 1) == 8


def test_use_cpu_cores_splits_the_host_before_jax_starts_and_keeps_it_after():
    code = (
        "import jax, cpi_theory as ct; ct.use_cpu_cores(3); print(jax.device_count('cpu')); "
        "ct.use_cpu_cores(5); print(jax.device_count('cpu'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3"]


@pytest.mark.parametrize("count", [0, -2, True])  # other types: the signature (checked in tests)
def test_use_cpu_cores_refuses_a_count_that_is_not_a_positive_integer(count):
    with pytest.raises(ct.ConfigError, match=r"^count: CPU devices: must be an integer >= 1"):
        ct.use_cpu_cores(count)
