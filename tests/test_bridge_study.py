"""The verification study's per-cell summary (joint fit included) re-derived from the committed runs."""

import json
import pathlib

import pytest

from cpi_theory.bridge import summarize_cells, write_study

FIGURES = pathlib.Path(__file__).resolve().parents[1] / "figures" / "bridge"


@pytest.fixture(scope="module")
def committed():
    return json.loads((FIGURES / "study_report.json").read_text())


def test_a_cell_resummarized_from_its_runs_is_the_committed_cell(committed, tmp_path):
    regime, cell = "strong", "C+S 0.5"
    runs = [r for r in committed["runs"] if r["regime"] == regime and r["cell"] == cell]
    (again,) = summarize_cells(runs, [regime], [cell])
    (stored,) = [c for c in committed["cells"] if (c["regime"], c["cell"]) == (regime, cell)]
    joint = again["joint_fit"]
    assert joint["curve_error"] == pytest.approx(stored["joint_fit"]["curve_error"], rel=1e-6)
    assert joint["summary"]["shape"] == stored["joint_fit"]["summary"]["shape"]
    # what the study measured is fixed in the joint fit, the rest is fitted with an interval
    parameters = joint["parameters"]
    assert parameters["delta_m"]["fixed"] and parameters["cs_fraction"]["fixed"]
    assert not parameters["lr_v_ratio"]["fixed"]
    # every file written is read back
    result = {"meta": committed["meta"], "cells": [again], "runs": runs}
    written = write_study(result, tmp_path, [regime], [cell])
    assert {p.name for p in written} >= {"study_report.json", "study_table.md", "study.png"}
    back = json.loads((tmp_path / "study_report.json").read_text())
    assert back["cells"][0]["joint_fit"]["curve_error"] == pytest.approx(joint["curve_error"], rel=1e-12)
    assert (
        f"{joint['curve_error']:.3f} ({joint['summary']['shape']})"
        in (tmp_path / "study_table.md").read_text()
    )
