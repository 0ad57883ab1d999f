"""benchmarks/loop_body.py: the compiled sweep loop's body read from the optimized HLO (issue 21's diagnosis)."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_loop_body_counts_the_steps_transcendentals(capsys):
    sys.path.insert(0, str(BENCHMARKS))
    import loop_body

    assert loop_body.main(["--runs", "20", "--steps", "5"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            rows[parts[0]] = (int(parts[1]), int(parts[2]))
    # one step: attention of the C row, the C+S row and the probe (3 exponentials each) and the two classes'
    # and the probe's sigmoids (3): 12 exponentials in both, and no logarithm inside the loop (the loss's
    # logarithms are hoisted or computed once, after it)
    assert rows["exponential"] == (12, 12)
    assert rows["log"] == (0, 0)
    assert rows["fusions"][0] >= 1 and rows["fusions"][1] >= 1
