"""The reduced engine is the full model, exactly: against the d x d engine and shared/reference to 1e-10."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.simulation._simulate import trajectory_from_records

HERE = pathlib.Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / "shared" / "reference"
if not REFERENCE.is_dir():
    REFERENCE = HERE / "reference"
TOL = 1e-10
PROBE = (
    "context_reliance",
    "attention_context",
    "attention_subject",
    "counterfactual_accuracy",
    "parametric_accuracy",
    "loss",
)


def assert_same_trajectory(a, b, tol=TOL):
    np.testing.assert_array_equal(a.step, b.step)
    for key in PROBE:
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=0, atol=tol, err_msg=key)
    assert a.per_class.keys() == b.per_class.keys()
    for cls in a.per_class:
        assert a.per_class[cls].keys() == b.per_class[cls].keys()
        for m in a.per_class[cls]:
            np.testing.assert_allclose(
                a.per_class[cls][m], b.per_class[cls][m], rtol=0, atol=tol, err_msg=f"{cls}/{m}"
            )


@pytest.mark.parametrize("name", ["paper_default", "with_value_training", "with_subject_only_points"])
def test_reference_trajectories(name):
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    traj = cpi.simulate(ref["config"], engine="reduced")
    assert traj.engine == "reduced"
    assert traj.step.tolist() == ref["step"]
    for key in ("context_reliance", "attention_context", "loss"):
        np.testing.assert_allclose(getattr(traj, key), ref[key], rtol=0, atol=TOL, err_msg=key)


# Together these cover lr_v = 0 and > 0, S points, augmented points, unequal and single-point classes,
# empty classes, o_c / o_r != 0, other vocabulary sizes and learning rates.
CONFIGS = [
    dict(n_subject_only=5, lr_v=0.3),
    dict(
        n_counterfactual_augmented=4,
        n_subject_only=3,
        lr_v=0.2,
        n_context_critical=7,
        n_non_context_critical=3,
    ),
    dict(
        o_c=0.5,
        o_r=-1.0,
        lr_v=0.5,
        lr_kq=2.0,
        n_answers=70,
        n_subjects=60,
        n_context_critical=1,
        n_non_context_critical=13,
        n_subject_only=2,
        n_counterfactual_augmented=1,
    ),
    dict(n_context_critical=0, n_non_context_critical=5, lr_v=1.0, delta_c=0.1, delta_m=0.9, n_answers=12),
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_matches_full_engine(overrides):
    # Default (steps, record_every) everywhere: one compilation of the reduced trainer serves all configs.
    cfg = cpi.Config(**overrides)
    assert_same_trajectory(cpi.simulate(cfg, engine="reduced"), cpi.simulate(cfg))


def test_one_compilation_for_any_sizes_and_vmap():
    """Vocabulary and class sizes are traced scalars: a vmapped batch of different sizes (and regimes: it runs
    in GENERAL) runs as one program."""
    cfgs = [
        cpi.Config(),
        cpi.Config(steps=300, record_every=1, n_answers=1000, n_subjects=400, lr_v=0.2),
        cpi.Config(steps=300, record_every=1, n_context_critical=7.5, n_non_context_critical=2.25),
    ]
    batch = jax.tree.map(lambda *xs: jnp.stack(xs), *[cpi.reduced_params(c) for c in cfgs])
    out = jax.vmap(lambda p: cpi.reduced_train(p, steps=300, record_every=1))(batch)
    for i, cfg in enumerate(cfgs):
        single = cpi.reduced_train(cpi.reduced_params(cfg), steps=300, record_every=1)
        np.testing.assert_allclose(
            out.records["context_reliance"][i], single.records["context_reliance"], rtol=0, atol=1e-13
        )
    # reduced_train runs the minimal engine's jitted program of the configuration's regime: other
    # vocabulary sizes in the same regime (the default's: W_V frozen, C and C+S) reuse it.
    from cpi_theory.reduced._minimal import _train

    size = _train._cache_size()
    cpi.reduced_train(cpi.reduced_params(cpi.Config(n_answers=333, n_subjects=77)), steps=300, record_every=1)
    assert _train._cache_size() == size


def test_real_class_sizes_interpolate_integer_ones():
    """A real class size is a mixture weight; at integer values it is the integer-count model."""
    base = cpi.Config()
    at_int = cpi.simulate(base.replace(n_context_critical=10.0), engine="reduced")
    assert_same_trajectory(at_int, cpi.simulate(base), tol=1e-12)
    lo = cpi.simulate(base.replace(n_context_critical=9.999999), engine="reduced").context_reliance
    hi = cpi.simulate(base.replace(n_context_critical=10.000001), engine="reduced").context_reliance
    # Continuous in the class size, and the full engine refuses real sizes with a clear error.
    assert np.max(np.abs(lo - at_int.context_reliance)) < 1e-5
    assert np.max(np.abs(hi - at_int.context_reliance)) < 1e-5
    with pytest.raises(cpi.ConfigError, match="reduced"):
        cpi.simulate(base.replace(n_context_critical=9.5))


def test_cli_reduced_engine(tmp_path):
    from cpi_theory.cli import main

    out = tmp_path / "t.json"
    assert main(["simulate", "--engine", "reduced", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["engine"] == "reduced"
    full = cpi.simulate(cpi.Config())
    np.testing.assert_allclose(data["context_reliance"], full.context_reliance, rtol=0, atol=TOL)


def test_trajectory_from_reduced_records_has_full_fields():
    cfg = cpi.Config(steps=300, record_every=1, n_subject_only=2)
    result = cpi.reduced_train(cpi.reduced_params(cfg), steps=300, record_every=1)
    traj = trajectory_from_records(cfg, "reduced", result.records)
    assert set(traj.per_class) == {"context_critical", "non_context_critical", "subject_only"}
    assert "margin" not in traj.per_class["subject_only"]
    assert result.final_state.shape == (len(cpi.reduced_state_names()),)
