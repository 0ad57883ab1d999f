"""Round two's scripts at ``micro`` (issue 22): the GPU grid script with its budget, and V3's pretraining
calibration; every file they write is read back."""

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(EXPERIMENTS))
    import bridge_round2_gpu
    import bridge_v3_calibration

    return bridge_round2_gpu, bridge_v3_calibration


def test_gpu_grid_script_runs_every_stage_and_resumes(tmp_path, scripts):
    gpu, _ = scripts
    out = tmp_path / "round2_micro"
    argv = ["--design", "V3", "--size", "micro", "--n-seeds", "1", "--budget-s", "600", "--out", str(out)]
    assert gpu.main(argv) == 0
    timing = json.loads((out / "timing.json").read_text())
    assert timing["design"] == "V3" and timing["size"] == "micro" and timing["not_run"] == []
    assert {"gate", "table"} <= set(timing["stages"]) and timing["wall_s"] > 0
    gate = json.loads((out / "gate.json").read_text())["V3/h4"]
    passed = [r["seed"] for r in gate if r["gate"]["passed"]]
    assert len(passed) <= 1 and (len(passed) == 1 or len(gate) == 12)
    runs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    # every gated seed has every arm of both cells, each arm a curve from step 0 to the last step
    assert {(r["cell"], r["arm"], r["seed"]) for r in runs} == {
        (cell, arm, seed)
        for cell in ("LoRA r8 q/k/v/o", "full finetuning")
        for arm in ("C+S 0.5", "control: C only (matched)", "control: fresh C")
        for seed in passed
    }
    results = json.loads((out / "results.json").read_text())["cells"]
    assert set(results) == {"V3 / LoRA r8 q/k/v/o", "V3 / full finetuning"}
    if passed:
        predictions = json.loads((out / "predictions.json").read_text())
        assert set(predictions) == set(results)
    # a rerun finds every run done: nothing is trained again
    assert gpu.main(argv) == 0
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(runs)


def test_gpu_grid_script_stops_starting_cells_past_its_budget(tmp_path, scripts):
    gpu, _ = scripts
    out = tmp_path / "cut"
    assert gpu.main(["--size", "micro", "--n-seeds", "1", "--budget-s", "0.001", "--out", str(out)]) == 0
    timing = json.loads((out / "timing.json").read_text())
    assert timing["not_run"] == ["LoRA r8 q/k/v/o", "full finetuning"]
    # the deadline is checked before each seed: at most the first one is pretrained; nothing is finetuned
    assert len(json.loads((out / "gate.json").read_text())["V3/h4"]) <= 1
    assert not (out / "runs.jsonl").exists()


def test_v3_calibration_records_every_seed_tried(tmp_path, scripts):
    _, calibration = scripts
    out = tmp_path / "cal"
    argv = ["--candidates", "preregistered", "--seeds", "0", "--size", "micro", "--out", str(out),
            "--checkpoints", str(tmp_path / "ck")]  # fmt: skip
    assert calibration.main(argv) == 0
    rows = calibration.read_rows(out / "calibration.jsonl")
    assert [(r["candidate"], r["seed"]) for r in rows] == [("preregistered", 0)]
    gate = rows[0]["gate"]
    md = (out / "calibration.md").read_text()
    assert f"{gate['context_reliance']:.3f}" in md and "preregistered: " in md
    assert calibration.main(argv) == 0  # resumed: the pair is not tried again
    assert len(calibration.read_rows(out / "calibration.jsonl")) == 1
    # a candidate changes only what it names
    from cpi_theory.bridge import ROUND2_REGIME, V3_REGIME

    base = calibration.candidate_design("preregistered", "micro")
    assert {k: base.world[k] for k in V3_REGIME} == {k: ROUND2_REGIME[k] for k in V3_REGIME}
    design = calibration.candidate_design("agree0.05_factnoise0.1", "micro")
    changed = {k for k in design.world if design.world[k] != base.world.get(k)}
    assert changed == {"agree_rate", "fact_noise"} and design.pretrain == base.pretrain
    # the regime V3 uses is the calibrated candidate's world
    chosen = calibration.candidate_design("agree0.05_factnoise0.1_copynoise0.85", "micro")
    assert chosen.world == calibration.get_design("V3", "micro").world


@pytest.mark.parametrize(
    "argv",
    [["--budget-s", "nan"], ["--budget-s", "0"], ["--budget-s", "inf"], ["--gate-share", "nan"],
     ["--gate-share", "1.5"], ["--n-seeds", "0"]],
)  # fmt: skip
def test_gpu_grid_script_refuses_bad_values_before_any_work(tmp_path, scripts, argv, capsys):
    gpu, _ = scripts
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stop:
        gpu.main(["--size", "micro", "--out", str(out), *argv])
    assert stop.value.code == 2 and argv[0] in capsys.readouterr().err
    assert not out.exists()


def test_v3_calibration_refuses_a_negative_seed(tmp_path, scripts, capsys):
    _, calibration = scripts
    with pytest.raises(SystemExit) as stop:
        calibration.main(["--seeds", "-1", "--size", "micro", "--out", str(tmp_path / "never")])
    assert stop.value.code == 2 and "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
