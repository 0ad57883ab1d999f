"""``cpi-theory bridge run --size tiny`` end to end on CPU: pretraining memorizes, the report is complete."""

import json

import numpy as np
import pytest

from cpi_theory.cli import main


@pytest.mark.slow
def test_bridge_run_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "tiny"
    ckpt = tmp_path / "ckpt"
    args = ["bridge", "run", "--size", "tiny", "--out", str(out), "--no-progress", "--checkpoint", str(ckpt)]
    assert main(args) == 0
    assert (ckpt / "params.npz").exists() and (ckpt / "model.json").exists()
    report = json.loads((out / "report.json").read_text())
    for key in ("real", "toy", "fit", "inversion_real", "inversion_toy", "prediction", "start"):
        assert key in report
    # Pretraining reached memorization: closed-book recall of held-out probe facts, at the strength that
    # fact_noise = 0.3 allows (p(fact) -> about 0.7 + 0.3 / 63).
    assert report["start"]["parametric_accuracy"] >= 0.95
    assert 0.55 < report["start"]["delta_m"] < 0.85
    real, toy = report["real"], report["toy"]
    n_records = report["finetune"]["steps"] // report["finetune"]["measure_every"] + 1
    assert len(real["step"]) == len(real["context_reliance"]) == len(toy["context_reliance"]) == n_records
    assert real["context_reliance"][0] == pytest.approx(report["start"]["context_reliance"], abs=1e-6)
    assert np.asarray(real["attention_context"]).shape == (report["model"]["n_layers"], n_records)
    fitted = np.asarray(toy["context_reliance"])
    rmse = np.sqrt(np.mean((fitted - np.asarray(real["context_reliance"])) ** 2))
    assert report["fit"]["curve_error"] == pytest.approx(rmse, rel=1e-9)
    assert report["fit"]["time_scale"] > 0
    assert report["inversion_real"] == (report["measured"]["shape"] == "rise-then-fall")
    # The joint fit (mixture fixed to the real class sizes): its report fields and its own shape.
    best = report["best_fit"]
    assert set(best["summary"]) >= {"shape", "peak_step", "peak", "final"}
    assert best["parameters"]["cs_fraction"]["fixed"] and "delta_m" in best["free"]
    assert report["inversion_toy_fitted"] == best["summary"]["inversion"]
    assert best["curve_error"] <= report["fit"]["curve_error"] + 1e-12
    assert (out / "bridge.png").exists() and (out / "bridge.pdf").exists()
    assert "wrote" in capsys.readouterr().out


def test_bridge_run_rejects_a_bad_fraction():
    with pytest.raises(SystemExit) as err:
        main(["bridge", "run", "--size", "tiny", "--out", "unused", "--cs-fraction", "1.5"])
    assert err.value.code == 2
