"""The bridge's verification study: 3 pretrained regimes x (4 C+S fractions + filtering + QK-only) x seeds.

    .venv/bin/python experiments/bridge_verification.py --size tiny --seeds 0 1 2 --out figures/bridge

writes ``study_report.json`` (every run and every cell), ``study_table.md`` (predicted vs observed per cell)
and ``study.png``/``study.pdf`` (real vs toy curves) under ``--out``, stamped with the machine it ran on.
``--from-report`` re-derives the cells, table and figure from the runs of an existing study_report.json
(no training; the per-cell toy fits are recomputed).
"""

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from verification_study import CELLS, run_study, summarize_cells, write_study  # beside this script

import cpi_theory as cpi
from cpi_theory.bridge import REGIMES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument(
        "--finetune-steps", type=int, default=None, help="override the size's finetuning steps"
    )
    parser.add_argument("--out", default="figures/bridge")
    parser.add_argument(
        "--machine",
        default=f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU",
        help="how the report names the machine it ran on",
    )
    parser.add_argument("--from-report", action="store_true", help="re-summarize --out/study_report.json")
    args = parser.parse_args(argv)
    cpi.enable_float64()
    if args.from_report:
        result = json.loads((Path(args.out) / "study_report.json").read_text())
        regimes, cells = list(result["meta"]["regimes"]), list(result["meta"]["cells"])
        result["cells"] = summarize_cells(result["runs"], regimes, cells)
        write_study(result, args.out, regimes, cells)
        print((Path(args.out) / "study_table.md").read_text())
        return 0
    result = run_study(
        args.size,
        tuple(args.seeds),
        tuple(args.regimes),
        {c: CELLS[c] for c in args.cells},
        out_dir=args.out,
        finetune_steps=args.finetune_steps,
    )
    meta_path = Path(args.out) / "study_meta.json"
    meta = {
        "machine": args.machine,
        "command": shlex.join(
            ["python", "experiments/bridge_verification.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "wall_seconds": result["meta"]["wall_seconds"],
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(Path(args.out) / "study_table.md")
    print((Path(args.out) / "study_table.md").read_text())
    print(f"{result['meta']['wall_seconds']:.0f} s on {args.machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
