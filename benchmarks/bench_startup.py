"""Start-up of the command line: wall time of `cpi-theory VERB --help`, of an unknown option and of a refused
value, per verb, each a fresh process (what a user waits for before the first line).

    python benchmarks/bench_startup.py [--repeat 5] [--pythonpath DIR]

Each command runs ``--repeat`` times with ``python -m cpi_theory.cli`` (the console script's entry point);
the table shows the median and the largest wall time in seconds, and the exit code. ``--pythonpath DIR``
measures the cpi_theory found in DIR instead (e.g. an export of an older commit: ``git archive fcfe35b |
tar -x -C /tmp/base``), so before and after are measured on the same machine in one sitting. A refused
value that an older version did not refuse runs until ``--timeout`` and shows as such.
"""

import argparse
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# (verb, unknown option, refused value): the refused values are refused by this version before any work.
CASES = [
    ("(none)", [], ["--bogus"], ["nosuchcommand"]),
    ("simulate", ["simulate"], ["simulate", "--bogus"], ["simulate", "--set", "steps=0"]),
    ("sweep", ["sweep"], ["sweep", "--bogus"], ["sweep", "spec.json", "--out", "r.nc", "--chunk-size", "0"]),
    ("bridge run", ["bridge", "run"], ["bridge", "run", "--bogus"], ["bridge", "run", "--out", "o", "--steps", "-1"]),
    ("bridge fit", ["bridge", "fit"], ["bridge", "fit", "--bogus"], ["bridge", "fit", "t.csv", "--out", "o", "--delta-m", "1.2"]),
    ("advise", ["advise"], ["advise", "--bogus"], ["advise", "--delta-m", "0.6", "--delta-c", "0.2",
                                                   "--cs-fraction", "0.5", "--horizon", "300", "--target", "1"]),
    ("reproduce", ["reproduce"], ["reproduce", "--bogus"], ["reproduce", "--only", "F9"]),
    ("appendix", ["appendix"], ["appendix", "--bogus"], ["appendix", "--outdir", "FILE"]),
]  # fmt: skip


def _time(argv: list[str], env: dict, cwd: str, repeat: int, timeout: float) -> tuple[float, float, str]:
    times, code = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "cpi_theory.cli", *argv],
                capture_output=True,
                env=env,
                cwd=cwd,
                timeout=timeout,
            )
            code = str(done.returncode)
        except subprocess.TimeoutExpired:
            code = f"still running at {timeout:g} s"
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times), code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--pythonpath", help="measure the cpi_theory package found in this folder")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a run is stopped")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.path.abspath(args.pythonpath)
    with tempfile.TemporaryDirectory() as cwd:
        pathlib.Path(cwd, "FILE").write_text("a file where a directory is expected\n")
        pathlib.Path(cwd, "spec.json").write_text('{"base": {}, "grid": {"steps": [10]}}\n')
        pathlib.Path(cwd, "t.csv").write_text("step,context_reliance\n0,0.5\n10,0.6\n20,0.7\n")
        where = subprocess.run(
            [sys.executable, "-c", "import cpi_theory, os; print(os.path.dirname(cpi_theory.__file__))"],
            capture_output=True, text=True, env=env, cwd=cwd, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"cpi_theory from {where}; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
              f"{platform.machine()}; median / max of {args.repeat} runs, seconds")  # fmt: skip
        header = f"{'verb':<11} {'--help':>14} {'unknown option':>16} {'refused value':>20}"
        print(header)
        for verb, help_argv, unknown_argv, refused_argv in CASES:
            cells = []
            for command, width in ((help_argv, 14), (unknown_argv, 16), (refused_argv, 20)):
                median, worst, code = _time([*command, "--help"] if command is help_argv else command, env,
                                            cwd, args.repeat, args.timeout)  # fmt: skip
                text = f"{median:.2f}/{worst:.2f}" + ("" if code in ("0", "2") else f" rc {code}")
                cells.append(f"{text:>{width}}")
            print(f"{verb:<11} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
