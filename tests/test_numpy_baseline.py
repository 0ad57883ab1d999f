"""The JAX engine agrees with an independent NumPy implementation with hand-written gradients."""

import pathlib
import sys

import numpy as np
import pytest

import cpi_theory as cpi

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from numpy_baseline import numpy_simulate  # noqa: E402


@pytest.mark.parametrize(
    "overrides",
    [
        {"steps": 30},
        {
            "steps": 30,
            "lr_v": 0.5,
            "n_subject_only": 3,
            "n_counterfactual_augmented": 2,
            "o_c": 0.3,
            "o_r": -1.0,
        },
        {"steps": 30, "lr_kq": 4.0, "n_context_critical": 3, "n_non_context_critical": 7, "n_answers": 30},
    ],
)
def test_jax_matches_numpy(overrides):
    config = cpi.Config.from_mapping(overrides)
    mc, loss = numpy_simulate(config)
    traj = cpi.simulate(config)
    np.testing.assert_allclose(traj.context_reliance, mc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.loss[:-1], loss, rtol=0, atol=1e-12)
