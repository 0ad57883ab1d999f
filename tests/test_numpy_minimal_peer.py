"""The minimal reduced engine (lr_v = 0) agrees with a hand-written vectorized NumPy peer to 1e-12.

The peer (benchmarks/numpy_minimal_peer.py) is derived from SPEC.md by hand, not from the sympy model, so
this is an independent check of the generated dynamics as well as of the benchmark's speed peer.
"""

import json
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.reduced import Regime, minimal_train

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from numpy_minimal_peer import STATE_NAMES, run_numpy  # noqa: E402
from numpy_minimal_peer import peer_inputs as _peer_inputs  # noqa: E402

TOL = 1e-12
REFERENCE = pathlib.Path(__file__).resolve().parent / "reference"
STEPS = 300
FROZEN = Regime(False, False, False)
# Together: other class sizes (unequal, single point, no C points, no C+S points), learning rates,
# delta_c / delta_m, vocabulary sizes, o_c / o_r, a relation score that lets r take attention.
CONFIGS = [
    {},
    dict(n_context_critical=3, n_non_context_critical=7, lr_kq=4.0, n_answers=30),
    dict(delta_c=0.1, delta_m=0.8, o_c=0.3, o_r=-1.0, n_subjects=60, n_answers=80),
    dict(n_context_critical=1, n_non_context_critical=13, lr_kq=0.3, delta_m=0.45, relation_score=-2.0),
    dict(n_context_critical=0, n_non_context_critical=5, lr_kq=2.0, o_c=-0.5),
    dict(n_non_context_critical=0, lr_kq=3.0, delta_c=0.25, delta_m=0.7, n_answers=20, n_subjects=15),
]


def _stacked(configs):
    params = [cpi.reduced_params(cpi.Config(**c)) for c in configs]
    return _peer_inputs(cpi.ToyParams.stack(params)), params


@pytest.fixture(scope="module")
def peer():
    batch, params = _stacked(CONFIGS)
    return run_numpy(batch, STEPS, trajectory=True, block=4), params


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_peer_matches_minimal_train(peer, index):
    out, params = peer
    ref = minimal_train(params[index], steps=STEPS, regime=FROZEN, metrics="context_reliance")
    mc = np.asarray(ref.records["context_reliance"])
    np.testing.assert_allclose(out["context_reliance"][:, index], mc, rtol=0, atol=TOL)
    # an empty class's own coordinates describe no point (the two conventions differ there): compare the rest
    present = [
        i
        for i, name in enumerate(STATE_NAMES)
        if not (name.startswith("kappa_C_") and CONFIGS[index].get("n_context_critical", 10) == 0)
        and not (name.startswith("kappa_CS_") and CONFIGS[index].get("n_non_context_critical", 10) == 0)
    ]
    np.testing.assert_allclose(
        out["final_state"][index, present], np.asarray(ref.final_state.x)[present], rtol=0, atol=TOL
    )
    assert out["start"][index] == out["context_reliance"][0, index]
    assert out["final"][index] == out["context_reliance"][-1, index]
    assert out["peak_step"][index] == int(np.argmax(out["context_reliance"][:, index]))
    assert out["peak"][index] == np.max(out["context_reliance"][:, index])


def test_summaries_without_trajectory_and_blocks(peer):
    """The online summaries do not depend on the block size or on keeping the curve."""
    out, _ = peer
    batch, _ = _stacked(CONFIGS)
    for block in (1, 5, 1024):
        summary = run_numpy(batch, STEPS, block=block)
        assert "context_reliance" not in summary
        for key in ("start", "peak", "peak_step", "final", "final_state"):
            np.testing.assert_array_equal(summary[key], out[key], err_msg=f"{key} (block {block})")


def test_paper_default_numbers(peer):
    """cpi.simulate()'s default trajectory (full d x d engine) and tests/reference/paper_default.json:
    0.2899 -> peak 0.8927 at step 32 -> 0.5826 at step 300."""
    out, _ = peer
    full = np.asarray(cpi.simulate().context_reliance)
    np.testing.assert_allclose(out["context_reliance"][:, 0], full, rtol=0, atol=TOL)
    reference = json.loads((REFERENCE / "paper_default.json").read_text())  # an independent implementation
    np.testing.assert_allclose(out["context_reliance"][:, 0], reference["context_reliance"], rtol=0, atol=TOL)
    assert round(float(out["start"][0]), 4) == 0.2899
    assert round(float(out["peak"][0]), 4) == 0.8927
    assert int(out["peak_step"][0]) == 32
    assert round(float(out["final"][0]), 4) == 0.5826


def test_context_bias():
    """The initial attention tilt (params["context_bias"]) as minimal_train models it."""
    params = cpi.reduced_params(cpi.Config(lr_kq=2.0), context_bias=jnp.asarray(1.5, dtype=jnp.float64))
    out = run_numpy(_peer_inputs(params), STEPS, trajectory=True)
    ref = minimal_train(params, steps=STEPS, regime=FROZEN, metrics="context_reliance")
    np.testing.assert_allclose(
        out["context_reliance"][:, 0], np.asarray(ref.records["context_reliance"]), rtol=0, atol=TOL
    )
    np.testing.assert_allclose(out["final_state"][0], np.asarray(ref.final_state.x), rtol=0, atol=TOL)


def test_rejects_value_training():
    params = _peer_inputs(cpi.reduced_params(cpi.Config(lr_v=0.3)))
    with pytest.raises(ValueError, match="lr_v"):
        run_numpy(params, 3)
