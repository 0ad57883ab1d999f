"""Fitting the toy to a curve: closed-form start, time-scale recovery, shape classes, external files."""

import dataclasses
import json

import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.cli import main
from cpi_theory.engine import classify_shape, summarize
from cpi_theory.fit import (
    context_bias_for_start,
    delta_c_for_start,
    fit_curve,
    fit_time_scale,
    load_trajectory,
    simulate_toy,
    toy_parameters,
    toy_start_reliance,
)
from cpi_theory.fit._fit import _toy_start

cpi.enable_float64()


def test_toy_start_reliance_matches_the_simulated_toy_and_inverts():
    params = toy_parameters(0.7, 0.15, cs_fraction=0.5)
    _, curve = simulate_toy(params, steps=1)
    assert curve[0] == pytest.approx(toy_start_reliance(0.7, 0.15), abs=1e-9)
    assert delta_c_for_start(0.7, toy_start_reliance(0.7, 0.15)) == pytest.approx(0.15, abs=1e-12)


def test_parameters_outside_the_toy_domain_are_clipped_and_noted():
    params = toy_parameters(0.9, 0.8, cs_fraction=0.25)
    assert params.delta_c < params.delta_m / 2
    assert any("delta_M > 2 delta_C" in note for note in params.notes)
    assert (params.n_context_critical, params.n_non_context_critical) == (15, 5)
    assert toy_parameters(0.6, 0.2, cs_fraction=0.5).notes == ()


@pytest.mark.parametrize("alpha_true", [0.5, 2.0])
def test_fit_recovers_a_known_time_scale_from_a_toy_generated_curve(alpha_true):
    # "Measured" curve: the toy run at lr_kq = alpha_true, observed every 4 steps for 60 steps, so step s
    # sits at toy time alpha_true * s. The fit only sees the lr_kq = 1 toy and must find alpha_true.
    params = toy_parameters(0.6, 0.2, cs_fraction=0.5)
    truth = cpi.simulate({**params.overrides(60), "lr_kq": alpha_true, "record_every": 4})
    toy_time, toy_curve = simulate_toy(params, steps=300)
    alpha, error = fit_time_scale(truth.step, truth.context_reliance, toy_time, toy_curve)
    # lr_kq * t is the toy's time only up to discretization (the two runs take different step sizes).
    assert alpha == pytest.approx(alpha_true, rel=0.05)
    assert error < 0.01
    wrong = np.sqrt(
        np.mean((np.interp(2 * alpha * truth.step, toy_time, toy_curve) - truth.context_reliance) ** 2)
    )
    assert wrong > 5 * error


def test_fit_curve_reports_prediction_fit_and_extension():
    params = toy_parameters(0.6, 0.2, cs_fraction=0.5)
    truth = cpi.simulate({**params.overrides(40), "lr_kq": 1.5, "record_every": 2})
    out = fit_curve(truth.step, truth.context_reliance, params, lr_v_ratios=(0.0, 0.1))
    assert out["measured"]["shape"] == "rise-then-fall" and out["measured"]["inversion"]
    assert out["prediction"]["summary"]["inversion"]
    assert out["fit"]["time_scale"] == pytest.approx(1.5, rel=0.05)
    assert out["extended_fit"]["curve_error"] <= max(out["extended_fit"]["lr_v_ratio_errors"].values())
    assert set(out["extended_fit"]["lr_v_ratio_errors"]) == {"0.0", "0.1"}
    # Every curve summary in the report is the engine's one summary, in the report's fields and types.
    summary = summarize(truth.step, truth.context_reliance)
    assert out["measured"] == {
        "start": summary.start,
        "peak": summary.peak,
        "peak_step": float(summary.peak_step),
        "final": summary.final,
        "shape": summary.shape,
        "inversion": summary.inversion,
    }
    assert type(out["measured"]["peak_step"]) is float and out["measured"]["inversion"] is True
    for key in ("prediction", "fit", "extended_fit", "prediction_calibrated"):
        curve = out[key]
        assert curve["summary"]["shape"] == summarize(curve["step"], curve["context_reliance"]).shape


@pytest.mark.parametrize(
    "curve, shape",
    [
        ([0.3, 0.5, 0.8, 0.6, 0.55], "rise-then-fall"),
        ([0.5, 0.35, 0.4, 0.61], "dip-then-rise"),
        ([0.26, 0.5, 0.9, 0.98], "monotone rise"),
        ([0.9, 0.7, 0.5], "monotone fall"),
        ([0.5, 0.51, 0.505], "flat"),
        ([0.5, 0.8, 0.2, 0.6], "rise-then-fall"),
    ],
)
def test_shape_classes(curve, shape):
    assert classify_shape(curve) == shape


def test_cli_fit_on_an_external_csv_trajectory(tmp_path, capsys):
    params = toy_parameters(0.6, 0.2, cs_fraction=0.5)
    truth = cpi.simulate({**params.overrides(80), "lr_kq": 0.8, "record_every": 4})
    path = tmp_path / "run.csv"
    rows = "\n".join(f"{int(s)},{v:.6f},x" for s, v in zip(truth.step, truth.context_reliance, strict=True))
    path.write_text("step,context_reliance,note\n" + rows + "\n")
    out = tmp_path / "fit"
    assert main(["bridge", "fit", str(path), "--out", str(out), "--delta-m", "0.6", "--no-extensions"]) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("real", "toy", "fit", "inversion_real", "inversion_toy"):
        assert key in report
    assert report["inversion_real"] and report["inversion_toy"]
    # delta_C is calibrated from M_C(0): the toy that generated the curve had 0.2.
    assert report["fit"]["parameters"]["delta_c"] == pytest.approx(0.2, abs=1e-4)
    assert report["fit"]["time_scale"] == pytest.approx(0.8, rel=0.05)
    assert (out / "fit.png").exists() and (out / "fit.pdf").exists()
    steps, values = load_trajectory(out / "report.json")  # a bridge report is itself a trajectory file
    np.testing.assert_allclose(values, truth.context_reliance, atol=1e-6)


def test_cli_fit_rejects_bad_input_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"step": [0, 1, 2], "context_reliance": [0.2, 1.4, 0.3]}))
    assert main(["bridge", "fit", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "context_reliance" in capsys.readouterr().err
    unsorted = tmp_path / "unsorted.json"
    unsorted.write_text(
        json.dumps(
            [
                {"step": 2, "context_reliance": 0.2},
                {"step": 1, "context_reliance": 0.3},
                {"step": 3, "context_reliance": 0.3},
            ]
        )
    )
    assert main(["bridge", "fit", str(unsorted), "--out", str(tmp_path / "o")]) == 2
    assert "step" in capsys.readouterr().err


@pytest.mark.parametrize(
    "step, context_reliance, message",
    [
        ("-5,0,5,10", "0.3,0.4,0.5,0.4", "step: {path}: must be >= 0, got -5 at record 1"),
        ("0,5,nan,10", "0.3,0.4,0.5,0.4", "step: {path}: must be finite, got nan at record 3"),
        ("0,5,inf,10", "0.3,0.4,0.5,0.4", "step: {path}: must be finite, got inf at record 3"),
        (
            "0,5,5,10",
            "0.3,0.4,0.5,0.4",
            "step: {path}: must be strictly increasing, got 5 after 5 at record 3",
        ),
        (
            "0,5,10,15",
            "0.3,nan,0.5,0.4",
            "context_reliance: {path}: must be finite, got nan at record 2",
        ),
    ],
)
def test_cli_fit_refuses_bad_steps_with_one_line_naming_the_column_and_rule(
    tmp_path, capsys, step, context_reliance, message
):
    path = tmp_path / "run.csv"
    rows = zip(step.split(","), context_reliance.split(","), strict=True)
    path.write_text("step,context_reliance\n" + "".join(f"{s},{v}\n" for s, v in rows))
    out = tmp_path / "fit"
    assert main(["bridge", "fit", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"cpi-theory bridge fit: error: {message.format(path=path)}\n"
    assert captured.out == "" and not out.exists()


def test_initial_attention_split_extension_reaches_starts_the_paper_toy_cannot():
    params = toy_parameters(0.66, 0.14, cs_fraction=0.5)
    # With delta_M > 2 delta_C and the paper's 1/2 : 1/2 split the toy cannot start above 1/2.
    assert toy_start_reliance(0.66, 0.49 * 0.66) < 0.5
    beta = context_bias_for_start(params, 0.72)
    assert beta > 0
    _, curve = simulate_toy(dataclasses.replace(params, context_bias=beta), steps=5)
    assert curve[0] == pytest.approx(0.72, abs=1e-9)
    # The tilt path runs the same trainer: at zero tilt it reproduces cpi.simulate exactly.
    config, world, state0, _ = _toy_start(params, 20)
    tilted = cpi.train(world, state0, config.lr_kq, config.lr_v, steps=20, record_every=1)
    np.testing.assert_array_equal(
        np.asarray(tilted.records["context_reliance"]), cpi.simulate(params.overrides(20)).context_reliance
    )
