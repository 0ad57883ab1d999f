"""benchmarks/gpu_check.py, the one prepared GPU script, run at tiny sizes on the CPU: every row it reports is
produced, its files are written and read back, and the engine agrees with the hand-written loop."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_at_tiny_sizes_and_writes_its_table(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.strip() == done.stdout.strip()
    assert results["device"].split(" ")[0] in table.splitlines()[0]
    for key in ("engine_simulate_many", "engine_vmap_minimal_summary", "hand_written_loop",
                "value_regime_simulate_many", "cli_reduced_rate", "cli_full_lr_v_0.0", "cli_full_lr_v_0.1"):  # fmt: skip
        assert results[key] > 0, key
    assert results["agreement_max_abs"] <= 1e-13
    assert "cpi-theory sweep: 200 runs" in results["cli_reduced_line"]
    assert table.count("\n| ") == 12  # the header, its rule and ten rows
