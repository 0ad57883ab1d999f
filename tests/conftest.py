"""Test-wide JAX settings: float64, strict dtype promotion, rank promotion "raise" (no silent broadcasting
of arrays of different ranks), and 4 simulated CPU devices for sharding tests. Shapes in annotations are
checked at run time (jaxtyping's hook with beartype, see ``addopts`` in pyproject.toml).

These must run before any JAX computation, hence at conftest import time.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_num_cpu_devices", 4)

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]

# Per-dtype tolerances for "equal up to rounding" comparisons.
RTOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO
