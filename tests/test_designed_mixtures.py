"""F7, mixtures designed by gradient (cpi_theory/figures/_f7_designed_mixtures.py): the quick run is done
once (module fixture: compiling the phase's tangent program dominates, ~45-60 s on 2 cores); its data file
is read back, the designed front is at least as high as every admissible hand mitigation at the same or
better memory retention, and the gradient the optimizer uses equals a central finite difference."""

import numpy as np
import pytest

from cpi_theory.figures import _f7_designed_mixtures as f7
from cpi_theory.figures import load_dataset


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("f7")
    result = f7.run(str(outdir), quick=True)
    return outdir, result


def test_data_file_is_read_back(quick):
    outdir, result = quick
    assert result["files"] == [f"{f7.STEM}.nc", f"{f7.STEM}.png", f"{f7.STEM}.pdf"]
    for name in result["files"]:
        assert (outdir / name).stat().st_size > 0
    ds = load_dataset(str(outdir / f"{f7.STEM}.nc"))
    assert int(ds.attrs["steps"]) == f7.QUICK["steps"]
    # the numbers of the index come from the file
    assert f7.numbers(ds) == result["numbers"]
    assert f7.notes(ds) == result["notes"]
    # designs are admissible: 10 free points split among C / augmented / S, lr_v in [0, 1], QK-only at 0
    for kind in ("static", "curriculum"):
        design = ds[f"{kind}_design"].values
        np.testing.assert_allclose(design[..., :3].sum(axis=-1), f7.N_FREE, rtol=1e-12)
        assert np.all(design >= 0) and np.all(design[..., 3] <= 1.0)
        assert np.all(ds[f"qk_{kind}_design"].values[:, 3] == 0.0)
        # each bound is met
        assert np.all(ds[f"{kind}_retention"].values >= ds.bound.values - 1e-6)
    # the curriculum starts from the static optimum: never worse
    assert np.all(ds.curriculum_mc.values >= ds.static_mc.values - 1e-12)


def test_front_beats_or_matches_admissible_hand_mitigations(quick):
    outdir, _ = quick
    ds = load_dataset(str(outdir / f"{f7.STEM}.nc"))
    rows = f7.comparison(ds)
    admissible = [r for r in rows if r[4]]
    assert len(admissible) >= 5  # the paper default, C -> augmented swaps, W_V at three rates
    for label, hand, front, margin, _ in admissible:
        assert margin >= -1e-9, (label, hand, front)
    # the hand mitigations outside the set that beat the front are named in the notes
    text = " ".join(f7.notes(ds))
    for label, _, _, margin, ok in rows:
        if not ok and margin < -1e-9:
            assert label in text


def test_gradient_equals_finite_difference():
    d = f7.designer(f7.QUICK["steps"], f7.QUICK["phases"])  # the quick run's compiled programs
    rng = np.random.default_rng(7)
    thetas = rng.normal(scale=1.0, size=(d.phases, f7.N_THETA))
    thetas[:, 3] = rng.uniform(0.2, 0.8, size=d.phases)  # lr_v / lr_kq
    values, jacobian = d.value_and_jacobian(thetas)
    np.testing.assert_allclose(values, d.evaluate(thetas), rtol=0, atol=1e-13)
    h = 1e-5
    for index in (
        1,
        3,
        7,
        11,
    ):  # a weight and lr_v of the first phase, a weight of the second, lr_v of the last
        step = np.zeros(thetas.size)
        step[index] = h
        up = np.asarray(d.evaluate(thetas.reshape(-1) + step))
        down = np.asarray(d.evaluate(thetas.reshape(-1) - step))
        fd = (up - down) / (2 * h)
        np.testing.assert_allclose(jacobian[:, index], fd, rtol=1e-6, atol=1e-9, err_msg=str(index))
    assert np.all(np.abs(jacobian[0]) > 1e-6)
