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
FOLDER = pathlib.Path(__file__).resolve().parents[1] / "figures" / "forecast"


def test_log_likelihood_is_the_gaussian_one_averaged_over_the_noise_grid():
    rng = np.random.default_rng(0)
    curves, y = rng.normal(size=(5, 7)), rng.normal(size=7)
    grid = np.array([0.5, 1.0, 2.0])
    per_sd = np.array([[stats.norm.logpdf(y, c, sd).sum() for sd in grid] for c in curves])
    expected = np.log(np.mean(np.exp(per_sd), axis=1))
    np.testing.assert_allclose(fo.log_likelihood(curves, y, grid), expected, rtol=1e-12)


def test_importance_sampler_recovers_a_linear_gaussian_posterior():
    # y = a + b s + noise (sd 0.1), a flat prior on a box far wider than the posterior: the posterior of
    # (a, b) is Gaussian with the least-squares mean and covariance 0.01 (X'X)^-1, so the predictive mean and
    # sd at a later step are closed-form.
    s = np.linspace(0.0, 1.0, 12)
    fit = s <= 0.6
    rng = np.random.default_rng(1)
    y = 0.3 + 0.5 * s + rng.normal(0.0, 0.1, s.size)
    X = np.stack([np.ones(s.size), s], axis=1)
    Xf = X[fit]
    cov = 0.01 * np.linalg.inv(Xf.T @ Xf)
    beta = np.linalg.solve(Xf.T @ Xf, Xf.T @ y[fit])
    u, curves, w, ess, _ = fo.importance_posterior(
        lambda u: u[:, :1] + u[:, 1:] * s,
        np.array([-3.0, -3.0]),
        np.array([3.0, 3.0]),
        y[fit],
        fit,
        np.random.default_rng(2),
        rounds=(4000, 4000, 20000),
        bank=20000,
        noise_grid=np.array([0.1]),
    )
    assert ess > 2000
    mean = w @ u
    post_sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(mean - beta) < 0.1 * post_sd)
    last = curves[:, -1]
    m = w @ last
    sd = np.sqrt(w @ (last - m) ** 2)
    exact_sd = math.sqrt(X[-1] @ cov @ X[-1])
    assert abs(m - X[-1] @ beta) < 0.1 * exact_sd
    assert sd == pytest.approx(exact_sd, rel=0.1)


@pytest.mark.parametrize(("wins", "n"), [(23, 27), (0, 10), (10, 10), (180, 200)])
def test_wilson_interval_solves_its_quadratic(wins, n):
    # the Wilson bounds are the p with (p_hat - p)^2 = z^2 p (1 - p) / n
    lo, hi = fo.wilson(wins, n)
    p_hat, z = wins / n, 1.96
    for p in (lo, hi):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, abs=1e-12)
    assert 0.0 <= lo <= p_hat <= hi <= 1.0


def test_tiny_run_writes_reads_back_and_resumes(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--curves", "3", "--rounds", "300,300"]
    assert fo.main(args) == 0
    first = json.loads((tmp_path / "oracle.json").read_text())
    rows = first["rows"]
    assert [(r["index"], r["origin"]) for r in rows] == [(2, o) for o in fo.after_peak_origins(2)]
    assert first["summary"] == json.loads(json.dumps(fo.summarize(rows)))
    assert "oracle beats persistence" in (tmp_path / "oracle.md").read_text()
    capsys.readouterr()
    assert fo.main(args) == 0  # resumed: nothing recomputed
    assert "oracle" not in capsys.readouterr().out.split("wrote")[0]
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
        assert row["rmse"]["oracle"] == pytest.approx(
            np.sqrt(np.mean((np.asarray(a["oracle"]) - o) ** 2)), rel=1e-12
        )
        assert row["rmse"]["persistence"] == pytest.approx(
            np.sqrt(np.mean((a["persistence"] - o) ** 2)), rel=1e-12
        )
        assert row["ess"] >= 100  # the importance sampler's last round was not degenerate


def test_committed_markdown_is_the_summarys(committed, tmp_path):
    fo.write_markdown(committed["summary"], committed["meta"], tmp_path / "oracle.md")
    assert (tmp_path / "oracle.md").read_text() == (FOLDER / "oracle.md").read_text()
