"""The committed forecast backtest and sampler check (figures/forecast/, issue 23), read back: the summary
tables recomputed from the per-forecast rows, each row's scores from its own arrays, and a sample of rows'
baselines (persistence and the smooth curve) recomputed from the curves themselves. The full run is
experiments/forecast_backtest.py (about an hour on 2 cores); nothing here samples."""

import json
import pathlib
import sys

import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.fit import smooth_baseline

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
from forecast_backtest import PUBLISHED, collect_curves, origins, peak_step, summarize_rows  # noqa: E402

cpi.enable_float64()
FOLDER = pathlib.Path(__file__).resolve().parents[1] / "figures" / "forecast"


@pytest.fixture(scope="module")
def backtest():
    return json.loads((FOLDER / "backtest.json").read_text())


@pytest.fixture(scope="module")
def curves():
    return {c["curve"]: c for c in collect_curves()}


def test_published_curves_are_the_tests_ones():
    from test_bridge_fit_joint import PUBLISHED as TESTS_PUBLISHED

    assert PUBLISHED == TESTS_PUBLISHED


def test_every_curve_and_origin_was_forecast(backtest, curves):
    done = {(r["curve"], r["origin"]) for r in backtest["rows"]}
    expected = {(name, o) for name, c in curves.items() for o in origins(c)}
    assert done == expected
    assert backtest["meta"]["forecasts"] == len(expected) and backtest["meta"]["curves"] == len(curves)


def test_summary_is_recomputed_from_the_rows(backtest):
    assert json.loads(json.dumps(summarize_rows(backtest["rows"]))) == backtest["summary"]


def test_each_rows_scores_follow_from_its_arrays(backtest, curves):
    for row in backtest["rows"]:
        a = {k: np.asarray(v, dtype=np.float64) for k, v in row["arrays"].items()}
        o = a["observed"]
        curve = curves[row["curve"]]
        held = curve["steps"] > row["origin"]
        np.testing.assert_allclose(a["step"], curve["steps"][held])
        np.testing.assert_allclose(o, curve["values"][held], atol=1e-6)
        for member, key in (("toy", "median"), ("persistence", "persistence"), ("smooth", "smooth"), ("stacked", "stacked")):  # fmt: skip
            assert row["rmse"][member] == pytest.approx(np.sqrt(np.mean((a[key] - o) ** 2)), abs=2e-6)
        assert row["coverage90"] == pytest.approx(
            np.mean((a["q05"] <= o) & (o <= a["q95"])), abs=0.5 / o.size
        )
        assert row["after_peak"] == (peak_step(curve) is not None and row["origin"] > peak_step(curve))


@pytest.mark.parametrize("index", [0, 1, -1])
def test_a_sample_of_baselines_is_recomputed_from_the_curves(backtest, curves, index):
    """Persistence and the smooth baseline (deterministic: seed 0) from the curve itself; for toy rows the
    noise-free truth too."""
    rows = backtest["rows"]
    sample = [
        rows[index],
        next(r for r in rows if r["group"] == "toy"),
        next(r for r in rows if r["group"] == "bridge-search"),
    ]
    for row in sample:
        curve = curves[row["curve"]]
        fit = curve["steps"] <= row["origin"]
        held = curve["steps"][~fit]
        persistence = np.full(held.size, curve["values"][fit][-1])
        smooth = smooth_baseline(curve["steps"][fit], curve["values"][fit], 6, held, seed=0)
        np.testing.assert_allclose(row["arrays"]["persistence"], persistence, atol=1e-6)
        np.testing.assert_allclose(row["arrays"]["smooth"], smooth, atol=1e-5)
        if "truth" in curve:
            np.testing.assert_allclose(row["arrays"]["truth"], curve["truth"][~fit], atol=1e-6)


def test_markdown_table_shows_the_summary(backtest):
    text = (FOLDER / "backtest.md").read_text()
    overall = backtest["summary"]["overall"]
    r = overall["rmse"]
    assert (
        f"| all curves | {overall['origins']} ({overall['after_peak']}) | {overall['held_points']} | {r['toy']:.4f} |"
        in text
    )
    for name in backtest["summary"]["per_curve"]:
        assert f"| {name} |" in text


@pytest.mark.parametrize("doc", ["README.md", "cpi_theory/forecast/README.md"])
def test_docs_results_tables_are_the_backtests(doc):
    """The results tables in the docs are rows of the committed backtest.md (no number typed by hand)."""
    text = (FOLDER.parents[1] / doc).read_text()
    section = text.split("<!-- backtest-table -->", 1)[1].split("<!-- /backtest-table -->", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert len(table) >= 4
    lines = set((FOLDER / "backtest.md").read_text().splitlines())
    assert [line for line in table if line not in lines] == []


@pytest.mark.skipif(not (FOLDER / "sampler_check.json").exists(), reason="no committed sampler check")
def test_committed_sampler_check_is_read_back(tmp_path):
    """figures/forecast/sampler_check.json read back: every case of the script has both samplers with
    their quantiles, its differences are recomputed from the stored predictive quantiles, and the
    committed table is the one the script writes from this json."""
    import forecast_sampler_check as C

    data = json.loads((FOLDER / "sampler_check.json").read_text())
    assert [(r["curve"], r["origin"]) for r in data["results"]] == list(C.CASES)
    for r in data["results"]:
        a, b = (np.asarray(r["samplers"][k]["predictive"]) for k in ("smc", "nuts"))
        assert a.shape == b.shape == (len(C.QUANTILES), len(r["held_steps"]))
        assert r["predictive_max_abs_difference"] == pytest.approx(float(np.max(np.abs(a - b))), abs=1e-15)
        assert r["median_max_abs_difference"] == pytest.approx(float(np.max(np.abs(a[2] - b[2]))), abs=1e-15)
        for sampler in ("smc", "nuts"):
            assert set(r["samplers"][sampler]["parameters"]) == {
                "delta_m", "delta_c_ratio", "context_fraction", "cs_share", "context_bias",
                "log_time_scale", "log_sigma", "rho",
            }  # fmt: skip
    C.write_markdown(data["results"], data["meta"], tmp_path / "table.md")
    assert (tmp_path / "table.md").read_text() == (FOLDER / "sampler_check.md").read_text()


@pytest.mark.parametrize("bad", ["0", "-3", "x"])
def test_backtest_refuses_bad_reference_starts_before_any_forecast(bad, tmp_path):
    """--reference-starts must be an integer >= 1: exit 2 before anything is written or forecast."""
    import forecast_backtest

    with pytest.raises(SystemExit) as exit_info:
        forecast_backtest.main(["--out", str(tmp_path / "bt"), "--reference-starts", bad])
    assert exit_info.value.code == 2
    assert not (tmp_path / "bt").exists()
