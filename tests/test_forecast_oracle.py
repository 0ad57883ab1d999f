"""The Bayes-optimal forecast of the toy curves (experiments/forecast_oracle.py, issue 23): its importance
sampler against a closed-form posterior, its likelihood and interval against independent formulas, a tiny
run read back and resumed, and the committed run (figures/forecast/oracle.json) recomputed from its rows."""

import json
import math
import pathlib
import sys

import numpy as np
import pytest
from scipy import stats

import cpi_theory as cpi

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import forecast_oracle as fo  # noqa: E402

cpi.enable_float64()
STEPS_41 = np.linspace(0.0, 400.0, 41) / 40.0
FOLDER = pathlib.Path(__file__).resolve().parents[1] / "figures" / "forecast"


def test_log_likelihood_is_the_clipped_gaussian_one_averaged_over_the_noise_grid():
    rng = np.random.default_rng(0)
    curves = rng.uniform(0.0, 1.0, size=(5, 7))
    y = np.concatenate([rng.uniform(0.1, 0.9, 5), [0.0, 1.0]])  # two points clipped, at 0 and at 1
    grid = np.array([0.05, 0.1, 0.2])
    terms = np.array(
        [
            [
                stats.norm.logpdf(y[:5], c[:5], sd).sum()
                + stats.norm.logcdf(0.0, c[5], sd)
                + stats.norm.logsf(1.0, c[6], sd)
                for sd in grid
            ]
            for c in curves
        ]
    )
    np.testing.assert_allclose(fo.log_likelihood_terms(curves, y, grid), terms, rtol=1e-12)
    np.testing.assert_allclose(
        fo.log_likelihood(curves, y, grid), np.log(np.mean(np.exp(terms), axis=1)), rtol=1e-12
    )


def test_toy_of_draws_the_backtests_toy_curves():
    for index in (0, 5, 33):
        _, _, clean, truth = fo.bt.toy_curve(index)
        u = np.array([[*(truth[n] for n in fo.bt.TRUTH_BOX), 400.0 * np.exp(truth["log_time_scale"])]])
        assert np.all((u >= fo.LOWER) & (u <= fo.UPPER))
        np.testing.assert_allclose(fo.toy_of(u)[0], clean, rtol=0, atol=1e-14)


def test_peaked_before_is_the_backtests_peak_rule():
    curves = np.stack([fo.bt.toy_curve(i)[2] for i in range(12)])
    curves = np.concatenate(
        [curves, [np.linspace(0.5, 0.2, 41), 0.5 + np.zeros(41), 0.5 + 0.005 * np.sin(STEPS_41)]]
    )
    for origin in (160.0, 240.0, 320.0):
        expected = []
        for c in curves:
            peak = fo.bt.peak_step({"steps": fo.STEPS, "values": c, "truth": c})
            expected.append(peak is not None and origin > peak)
        assert fo.peaked_before(curves, origin).tolist() == expected
    assert 0 < fo.peaked_before(curves, 240.0).sum() < curves.shape[0]


def _clipped_mean_by_quadrature(f: float, s: float) -> float:
    from scipy.integrate import quad

    return quad(
        lambda e: min(max(f + e, 0.0), 1.0) * stats.norm.pdf(e, 0.0, s), -12 * s, 12 * s, points=[-f, 1 - f]
    )[0]


def test_clipped_predictive_mean_and_median_against_direct_computation():
    from scipy.optimize import brentq

    for f, s in [(0.5, 0.1), (0.02, 0.03), (0.99, 0.05), (-0.1, 0.05)]:
        assert float(fo.clipped_mean(np.float64(f), np.float64(s))) == pytest.approx(
            _clipped_mean_by_quadrature(f, s), abs=1e-10
        )
    rng = np.random.default_rng(3)
    curves = rng.uniform(-0.05, 1.05, size=(6, 4))
    grid = np.array([0.02, 0.08])
    joint = rng.uniform(size=(6, 2))
    joint /= joint.sum()
    mean, median = fo.predictive_mean_median(curves, joint, grid)
    pairs = [(i, k) for i in range(6) for k in range(2)]
    for j in range(4):
        f = curves[:, j]
        expected = sum(joint[i, k] * _clipped_mean_by_quadrature(f[i], grid[k]) for i, k in pairs)
        assert mean[j] == pytest.approx(expected, abs=1e-8)

        def cdf(m, f=f):
            return sum(joint[i, k] * stats.norm.cdf(m, f[i], grid[k]) for i, k in pairs) - 0.5

        assert median[j] == pytest.approx(min(max(brentq(cdf, -1.0, 2.0, xtol=1e-14), 0.0), 1.0), abs=1e-9)


S_LINEAR = np.linspace(0.0, 1.0, 12)
FIT_LINEAR = S_LINEAR <= 0.6


def _linear_posterior(seed: int, given=None):
    """y = a + b s + noise (sd 0.1) on 12 steps, fitted on the first 7, with a flat prior on a box far wider
    than the posterior: the exact posterior of (a, b) is Gaussian with the least-squares mean and covariance
    0.01 (X'X)^-1. Returns that mean and covariance, the design and the sampler's output."""
    y = 0.3 + 0.5 * S_LINEAR + np.random.default_rng(1).normal(0.0, 0.1, S_LINEAR.size)
    X = np.stack([np.ones(S_LINEAR.size), S_LINEAR], axis=1)
    Xf = X[FIT_LINEAR]
    cov = 0.01 * np.linalg.inv(Xf.T @ Xf)
    beta = np.linalg.solve(Xf.T @ Xf, Xf.T @ y[FIT_LINEAR])
    sampled = fo.importance_posterior(
        lambda u: u[:, :1] + u[:, 1:] * S_LINEAR,
        np.array([-3.0, -3.0]),
        np.array([3.0, 3.0]),
        y[FIT_LINEAR],
        FIT_LINEAR,
        np.random.default_rng(seed),
        rounds=(4000, 4000, 20000),
        bank=20000,
        noise_grid=np.array([0.1]),
        given=None if given is None else given(beta),
    )
    return beta, cov, X, sampled


def test_importance_sampler_recovers_a_linear_gaussian_posterior():
    beta, cov, X, (u, curves, w, ess, _) = _linear_posterior(2)
    assert ess > 2000
    post_sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(w @ u - beta) < 0.1 * post_sd)
    last = curves[:, -1]  # the predictive of the curve at a step after the fitted part
    m = w @ last
    exact_sd = math.sqrt(X[-1] @ cov @ X[-1])
    assert abs(m - X[-1] @ beta) < 0.1 * exact_sd
    assert np.sqrt(w @ (last - m) ** 2) == pytest.approx(exact_sd, rel=0.1)


def test_importance_sampler_conditions_on_an_event():
    # given that the slope exceeds its posterior mean, the slope's posterior is the Gaussian cut at its
    # mean, whose mean is beta + sd * phi(0) / (1 - Phi(0)) = beta + sqrt(2 / pi) sd
    def given(beta):
        return lambda curves: curves[:, -1] - curves[:, 0] > beta[1]

    beta, cov, _, (u, _, w, ess, _) = _linear_posterior(4, given)
    sd = math.sqrt(cov[1, 1])
    assert ess > 2000 and np.all(u[w > 0, 1] > beta[1])
    assert w @ u[:, 1] == pytest.approx(beta[1] + sd * math.sqrt(2 / math.pi), abs=0.05 * sd)


def test_curve_bootstrap_resamples_whole_curves():
    rows = [{"curve": c} for c in ("a", "a", "a", "b", "c", "d")]
    assert fo.curve_bootstrap(rows, [True] * 6) == [1.0, 1.0]
    lo, hi = fo.curve_bootstrap(rows, [False, False, False, True, True, True])
    # curve a (3 origins, all lost) is drawn 0-4 times among 4 curves: shares from 0 to 1
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert fo.curve_bootstrap(rows, [False, False, False, True, True, True]) == [lo, hi]  # seeded


def test_tiny_run_writes_reads_back_and_resumes(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--curves", "3", "--rounds", "300,300"]
    assert fo.main(args) == 0
    first = json.loads((tmp_path / "oracle.json").read_text())
    rows = first["rows"]
    assert [(r["index"], r["origin"]) for r in rows] == [(2, o) for o in fo.after_peak_origins(2)]
    assert first["summary"] == json.loads(json.dumps(fo.summarize(rows)))
    assert "oracle median beats persistence" in (tmp_path / "oracle.md").read_text()
    capsys.readouterr()
    assert fo.main(args) == 0  # resumed: nothing recomputed
    assert "[1/" not in capsys.readouterr().out
    assert json.loads((tmp_path / "oracle.json").read_text())["rows"] == rows


@pytest.mark.parametrize("bad", [["--rounds", "10"], ["--rounds", "x"], ["--curves", "0"]])
def test_bad_arguments_exit_2(bad, tmp_path):
    with pytest.raises(SystemExit) as stop:
        fo.main(["--out", str(tmp_path), *bad])
    assert stop.value.code == 2


@pytest.fixture(scope="module")
def committed():
    return json.loads((FOLDER / "oracle.json").read_text())


def test_committed_run_covers_every_after_peak_origin(committed):
    rows = committed["rows"]
    expected = [(i, o) for i in range(committed["meta"]["curves"]) for o in fo.after_peak_origins(i)]
    assert [(r["index"], r["origin"]) for r in rows] == expected
    backtest = json.loads((FOLDER / "backtest.json").read_text())["rows"]
    post = {(r["curve"], r["origin"]) for r in backtest if r["group"] == "toy" and r["after_peak"]}
    assert {(r["curve"], r["origin"]) for r in rows if r["in_backtest"]} == post


def test_committed_summary_and_scores_follow_from_the_rows(committed):
    backtest = json.loads((FOLDER / "backtest.json").read_text())["rows"]
    assert json.loads(json.dumps(fo.summarize(committed["rows"], backtest))) == committed["summary"]
    for row in committed["rows"]:
        a = row["arrays"]
        steps, noisy, clean, _ = fo.bt.toy_curve(row["index"])
        held = steps > row["origin"]
        np.testing.assert_allclose(a["observed"], noisy[held], rtol=0, atol=0)
        np.testing.assert_allclose(a["truth"], clean[held], rtol=0, atol=0)
        assert a["persistence"] == noisy[~held][-1]
        o = np.asarray(a["observed"])
        for name in ("oracle_median", "oracle_mean"):
            assert row["rmse"][name] == pytest.approx(
                np.sqrt(np.mean((np.asarray(a[name]) - o) ** 2)), rel=1e-12
            )
        assert row["rmse"]["persistence"] == pytest.approx(
            np.sqrt(np.mean((a["persistence"] - o) ** 2)), rel=1e-12
        )
        assert row["ess"] >= 50  # the importance sampler's last round was not degenerate


def test_a_committed_oracle_row_is_recomputed(committed):
    row = committed["rows"][0]
    tag = committed["meta"]["settings"]
    again = fo.oracle_row(
        row["index"], row["origin"], tuple(committed["meta"]["rounds"]), seed=int(tag.split("seed ")[1])
    )
    for name in ("oracle_median", "oracle_mean"):
        np.testing.assert_allclose(again["arrays"][name], row["arrays"][name], rtol=0, atol=1e-12)
    assert again["ess"] == pytest.approx(row["ess"], rel=1e-9)


def test_committed_markdown_is_the_summarys(committed, tmp_path):
    fo.write_markdown(committed["summary"], committed["meta"], tmp_path / "oracle.md")
    assert (tmp_path / "oracle.md").read_text() == (FOLDER / "oracle.md").read_text()
