"""Loss of precision is detected and reported with its step, in both engines and on the CLI (exit 1)."""

import subprocess
import sys

import numpy as np
import pytest

import cpi_theory as ct


@pytest.mark.parametrize("engine", ["full", "reduced"])
def test_huge_value_rate_stops_with_the_step_and_the_magnitude(engine):
    # lr_v = 1e16 is a valid configuration; after one step W_V's logits are ~1e15 and float64 no longer
    # resolves M_C's logit gap (the engines disagreed by 0.015 in M_C there before this check existed).
    with pytest.raises(
        ct.PrecisionLossError, match=r"precision lost at step 1: .* magnitude 8\.72e\+14"
    ) as err:
        ct.simulate({"lr_v": 1e16, "steps": 5}, engine=engine)
    assert err.value.step == 1 and err.value.magnitude * np.finfo(np.float64).eps > 1e-9


def test_large_but_resolvable_rates_run_and_the_engines_agree():
    # Magnitudes ~1e5 keep M_C's inputs to ~1e-11: the run is exact and the two engines agree.
    full = ct.simulate({"lr_v": 1e6, "steps": 20})
    reduced = ct.simulate({"lr_v": 1e6, "steps": 20}, engine="reduced")
    np.testing.assert_allclose(full.context_reliance, reduced.context_reliance, rtol=0, atol=1e-10)


def test_saturating_attention_rate_is_reported_not_returned():
    with pytest.raises(ct.PrecisionLossError, match="at step 1"):
        ct.simulate({"lr_kq": 1e300, "steps": 3})


def test_the_paper_settings_are_far_from_the_limit():
    # The late plateau run of the appendix (tau = 2e5) passes the check.
    traj = ct.simulate({"lr_kq": 10.0, "steps": 20000, "record_every": 20000})
    assert abs(traj.context_reliance[-1] - 0.5645) < 1e-3


def test_cli_reports_precision_loss_with_exit_1_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "cpi_theory.cli", "simulate", "--set", "lr_v=1e16", "--set", "steps=5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("cpi-theory simulate: error: precision lost at step 1:")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
