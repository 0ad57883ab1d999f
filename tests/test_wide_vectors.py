"""``use_cpu_cores`` asks XLA for 512-bit vectors on AVX-512 CPUs: results agree with the default width within
the engine's 1e-13, and a width the user set is kept."""

import json
import os
import subprocess
import sys

import pytest

from cpi_theory.simulation import _batch

SCRIPT = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import cpi_theory as cpi
sys.path.insert(0, "benchmarks")
from bench_minimal import grid
out = {}
for lr_v in (0.0, 0.3):
    params, _ = grid(200, lr_v=lr_v)
    s = cpi.simulate_many(params, steps=300, store_every=0, cpu_kernel=False).summary  # XLA's vectors
    out[str(lr_v)] = {k: np.asarray(s[k], dtype=float).tolist() for k in ("start", "peak", "final")}
print(json.dumps(out))
"""


def _run(xla_flags: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_wide_vectors_agree_with_the_default_width():
    default, wide = _run(""), _run(_batch.WIDE_VECTORS)
    for regime in default:
        for key in default[regime]:
            a, b = default[regime][key], wide[regime][key]
            assert len(a) == len(b) == 200
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-13, (regime, key)


@pytest.mark.parametrize(("avx512", "before", "after"), [
    (True, "", _batch.WIDE_VECTORS),
    (True, "--xla_cpu_prefer_vector_width=256", "--xla_cpu_prefer_vector_width=256"),
    (False, "", ""),
])  # fmt: skip
def test_use_cpu_cores_adds_the_flag_only_where_it_helps(monkeypatch, avx512, before, after):
    monkeypatch.setenv("XLA_FLAGS", before)
    monkeypatch.setattr(_batch, "cpu_has_avx512", lambda: avx512)
    _batch.use_cpu_cores()  # the backend is up in this process: the devices stay as they are
    assert os.environ["XLA_FLAGS"] == after
    monkeypatch.setenv("XLA_FLAGS", "")
    _batch.use_cpu_cores(wide_vectors=False)
    assert os.environ["XLA_FLAGS"] == ""
