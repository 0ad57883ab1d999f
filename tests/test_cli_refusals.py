"""Every verb refuses bad input before any work: exit code 2, one line on stderr naming the option (or key)
and stating the rule, nothing written, within a few seconds. One table, every verb.

Paths in the table: ``FILE`` is an existing file, ``GOOD`` a valid trajectory CSV, ``DIR`` an existing
empty directory, all inside the test's temporary directory (the working directory of each case).
"""

import time

import pytest

from cpi_theory.cli import main

SIM = ["simulate"]
RUN = ["bridge", "run", "--size", "tiny", "--out", "out"]
FIT = ["bridge", "fit", "GOOD", "--out", "out"]
FORECAST = ["forecast", "CURVE", "--out", "out", "--until", "40"]
ADVISE = ["advise", "--delta-m", "0.6", "--delta-c", "0.2", "--cs-fraction", "0.5", "--horizon", "300"]
TARGET = ["--target", "0.7"]

# (argv, text the one-line refusal must contain: the option or key, and where useful the rule)
CASES = [
    # simulate
    ([*SIM, "--engine", "x"], "argument --engine: invalid choice"),
    ([*SIM, "--set", "steps=0"], "steps: must be >= 1"),
    ([*SIM, "--set", "steps=-3"], "steps: must be >= "),
    ([*SIM, "--set", "delta_m=0.3"], "delta_m: must be > 2*delta_c"),
    ([*SIM, "--set", "bogus=1"], "bogus: unknown config key"),
    ([*SIM, "--set", "lr_kq=nan"], "lr_kq: must be a real number"),
    ([*SIM, "--set", "novalue"], "--set: expected key=value"),
    ([*SIM, "--config", "missing.json"], "--config: file not found"),
    ([*SIM, "--out", "nodir/sub/o.json"], "--out: the folder"),
    ([*SIM, "--out", "DIR"], "--out: DIR is a directory"),
    ([*SIM, "--out", "o.json", "--plot", "p.txt"], "--plot: must end in .png, .pdf, .svg"),
    ([*SIM, "--out", "o.json", "--plot", "nodir/p.png"], "--plot: the folder"),
    # sweep (its own checks are the sweep's; argparse's here)
    (["sweep"], "the following arguments are required: SPEC"),
    (["sweep", "spec.json"], "the following arguments are required: --out"),
    (["sweep", "spec.json", "--out", "r.nc", "--chunk-size", "many"], "argument --chunk-size"),
    # bridge run: refused before any pretraining
    ([*RUN, "--steps", "-1"], "argument --steps: must be an integer >= 1"),
    ([*RUN, "--steps", "2.5"], "argument --steps: must be an integer >= 1"),
    ([*RUN, "--lr", "nan"], "argument --lr: must be a finite number > 0"),
    ([*RUN, "--lr", "0"], "argument --lr: must be a finite number > 0"),
    ([*RUN, "--measure-every", "0"], "argument --measure-every"),
    ([*RUN, "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    ([*RUN, "--cs-fraction", "1.5"], "argument --cs-fraction: must be a finite number >= 0 and <= 1"),
    (
        [*RUN, "--cs-fraction", "0.6", "--s-fraction", "0.6"],
        "--s-fraction: --cs-fraction + --s-fraction must be <= 1",
    ),
    ([*RUN, "--cs-fraction", "1", "--filter-cs"], "--filter-cs: filtering the C+S points"),
    ([*RUN, "--size", "huge"], "argument --size: invalid choice"),
    ([*RUN, "--optimizer", "lbfgs"], "argument --optimizer: invalid choice"),
    (["bridge", "run", "--out", "FILE"], "--out: FILE exists and is not a directory"),
    (
        ["bridge", "run", "--out", "out", "--checkpoint", "FILE"],
        "--checkpoint: FILE exists and is not a directory",
    ),
    (["bridge", "run"], "the following arguments are required: --out"),
    ([*RUN, "--design", "V9"], "argument --design: invalid choice"),
    ([*RUN, "--cell", "1"], "--cell: picks a cell of a --design"),
    ([*RUN, "--design", "V2", "--cell", "2"], "--cell: V2 has cells 0 to 1"),
    ([*RUN, "--design", "V1", "--lr", "0.1"], "--lr: the --design fixes its recipe"),
    # bridge fit: refused before the fitting stack is loaded
    ([*FIT, "--lr-v-ratio", "-1"], "argument --lr-v-ratio: must be a finite number >= 0 and <= 1"),
    ([*FIT, "--lr-v-ratio", "nan"], "argument --lr-v-ratio"),
    ([*FIT, "--starts", "0"], "argument --starts: must be an integer >= 1"),
    ([*FIT, "--starts", "-1"], "argument --starts: must be an integer >= 1"),
    ([*FIT, "--warmup-steps", "-10"], "argument --warmup-steps: must be a finite number >= 0"),
    ([*FIT, "--delta-m", "0.3", "--delta-c", "0.2"], "--delta-m: must be > 2 x --delta-c"),
    ([*FIT, "--delta-m", "1.2"], "argument --delta-m: must be a finite number > 0 and < 1"),
    ([*FIT, "--delta-c", "inf"], "argument --delta-c"),
    ([*FIT, "--delta-c", "0.6"], "--delta-c: must be < 0.49"),
    ([*FIT, "--cs-fraction", "0.7", "--s-fraction", "0.4"], "--s-fraction: --cs-fraction + --s-fraction"),
    ([*FIT, "--fit-until", "-1"], "argument --fit-until"),
    ([*FIT, "--seed", "-2"], "argument --seed"),
    ([*FIT, "--decay", "cosine"], "--total-steps: a --decay needs --total-steps"),
    (
        [*FIT, "--decay", "linear", "--total-steps", "5", "--warmup-steps", "10"],
        "--total-steps: a --decay needs",
    ),
    ([*FIT, "--total-steps", "100"], "--total-steps: only with --decay"),
    ([*FIT, "--fit-lr-v", "--lr-v-ratio", "0.5"], "--lr-v-ratio: fixes lr_v / lr_kq; --fit-lr-v fits it"),
    (["bridge", "fit", "GOOD", "--out", "FILE"], "--out: FILE exists and is not a directory"),
    (["bridge", "fit", "missing.csv", "--out", "out"], "trajectory: file not found: missing.csv"),
    (
        ["bridge", "fit", "HEADER", "--out", "out"],
        "trajectory: HEADER.csv: the CSV has a header but no data rows",
    ),
    (["bridge", "fit", "DIR", "--out", "out"], "trajectory: DIR is not a file"),
    # forecast: the curve read and checked with the standard library, before JAX or NumPy
    ([*FORECAST[:-2]], "the following arguments are required: --until"),
    (["forecast", "CURVE", "--until", "40"], "the following arguments are required: --out"),
    (["forecast", "EMPTY", "--out", "out", "--until", "40"], "curve: EMPTY.csv: the file is empty"),
    (["forecast", "HEADER", "--out", "out", "--until", "40"], "curve: HEADER.csv: no data rows"),
    (
        ["forecast", "ONEROW", "--out", "out", "--until", "0"],
        "curve: ONEROW.csv: 1 data row(s); need at least 5",
    ),
    (
        ["forecast", "DOWN", "--out", "out", "--until", "40"],
        "step: DOWN.csv: must be strictly increasing, got 20 after 30 at record 4",
    ),
    (
        ["forecast", "OUTSIDE", "--out", "out", "--until", "40"],
        "context_reliance: OUTSIDE.csv: must lie in [0, 1], got 1.2 at record 3",
    ),
    (
        ["forecast", "NOTNUMBER", "--out", "out", "--until", "40"],
        "context_reliance: NOTNUMBER.csv: must be a number, got 'high'",
    ),
    (
        ["forecast", "BADJSON", "--out", "out", "--until", "40"],
        "curve: BADJSON.json: neither .csv nor valid JSON",
    ),
    (["forecast", "missing.csv", "--out", "out", "--until", "40"], "curve: file not found: missing.csv"),
    (["forecast", "DIR", "--out", "out", "--until", "40"], "curve: DIR is not a file"),
    (["forecast", "CURVE", "--out", "FILE", "--until", "40"], "--out: FILE exists and is not a directory"),
    ([*FORECAST[:-1], "100"], "--until: 100 is past the data (its last step is 90)"),
    ([*FORECAST[:-1], "30"], "--until: need at least 5 points at or before it, got 4"),
    ([*FORECAST[:-1], "-5"], "argument --until: must be a finite number >= 0"),
    ([*FORECAST[:-1], "nan"], "argument --until: must be a finite number >= 0"),
    ([*FORECAST[:-1], "90"], "--horizon: required when --until is at the last measured step"),
    ([*FORECAST, "--horizon", "30"], "--horizon: must lie after the origin 40 and at most 20x"),
    (
        [*FORECAST, "--horizon", "900"],
        "--horizon: must lie after the origin 40 and at most 20x the fitted span from the first step (800), got 900",
    ),
    ([*FORECAST, "--below", "1.5"], "argument --below: must be a finite number >= 0 and <= 1"),
    ([*FORECAST, "--particles", "8"], "argument --particles: must be an integer >= 16"),
    ([*FORECAST, "--reference", "1.5"], "argument --reference: must be a finite number >= 0 and <= 1"),
    ([*FORECAST, "--replicas", "1"], "argument --replicas: must be an integer >= 2"),
    ([*FORECAST, "--mutations", "0"], "argument --mutations: must be an integer >= 1"),
    ([*FORECAST, "--noise", "pink"], "argument --noise: invalid choice"),
    # advise
    (ADVISE, "--target: required: the M_C wanted at the horizon"),
    ([*ADVISE, "--target", "nan"], "--target: must be finite"),
    ([*ADVISE, "--target", "1"], "--target: must lie strictly between 0 and 1"),
    ([*ADVISE, *TARGET, "--lr-v-ratio", "nan"], "--lr-v-ratio: must be finite"),
    ([*ADVISE, *TARGET, "--lr-v-ratio", "-1"], "--lr-v-ratio: must be >= 0"),
    ([*ADVISE, *TARGET, "--delta-c", "0.35"], "--delta-m: must be > 2*delta_c"),
    ([*ADVISE, *TARGET, "--n-points", "0"], "--n-points: must be > 0"),
    ([*ADVISE, *TARGET, "--s-fraction", "0.6"], "--s-fraction: cs_fraction + s_fraction must be <= 1"),
    (
        ["advise", "--from-fit", "REPORT"],
        "--target: required: the M_C wanted at the horizon, in (0, 1) (a --from-fit",
    ),
    (
        ["advise", "--from-fit", "SCHEDULED", "--target", "0.8"],
        "--horizon: required: the --from-fit report gives no horizon",
    ),
    (["advise", "--from-fit", "FILE", "--target", "0.8"], "--from-fit"),
    # reproduce
    (["reproduce", "--only", ""], "--only: names no figure"),
    (["reproduce", "--only", " , "], "--only: names no figure"),
    (["reproduce", "--only", "F9"], "--only: unknown figure(s) F9"),
    (["reproduce", "--outdir", "FILE"], "--outdir: FILE exists and is not a directory"),
    (["reproduce", "--reference", "DIR"], "--reference: only with --check"),
    (["reproduce", "--check", "--only", "F1"], "--reference: no such directory: figures"),  # not in a clone
    (
        ["reproduce", "--check", "missing_dir", "--reference", "DIR"],
        "--check: no such directory: missing_dir",
    ),
    (
        ["reproduce", "--check", "DIR", "--reference", "DIR", "--outdir", "o"],
        "--check: with a folder to compare",
    ),
    (["reproduce", "--check", "--reference", "DIR", "--only", "F1"], "--reference: DIR has no F1"),
    (
        ["reproduce", "--check", "--reference", "DIR", "--outdir", "FILE"],
        "--outdir: FILE exists and is not a dir",
    ),
    (["reproduce", "--experiments-dir", "missing_dir"], "--experiments-dir: no such directory"),
    # appendix
    (["appendix", "--outdir", "FILE"], "--outdir: FILE exists and is not a directory"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("not a directory\n")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "GOOD.csv").write_text("step,context_reliance\n0,0.5\n10,0.6\n20,0.7\n")
    (tmp_path / "HEADER.csv").write_text("step,context_reliance\n")
    curve = "step,context_reliance\n" + "".join(f"{10 * i},0.{i + 1}\n" for i in range(10))  # steps 0-90
    (tmp_path / "CURVE.csv").write_text(curve)
    (tmp_path / "EMPTY.csv").write_text("")
    (tmp_path / "ONEROW.csv").write_text("step,context_reliance\n0,0.5\n")
    (tmp_path / "DOWN.csv").write_text(curve.replace("\n30,", "\n20,", 1).replace("\n20,0.3", "\n30,0.3", 1))
    (tmp_path / "OUTSIDE.csv").write_text(curve.replace("\n20,0.3", "\n20,1.2"))
    (tmp_path / "NOTNUMBER.csv").write_text(curve.replace("\n20,0.3", "\n20,high"))
    (tmp_path / "BADJSON.json").write_text("{not json")
    report = (repo_root / "figures" / "bridge" / "joint_example" / "report.json").read_text()
    (tmp_path / "REPORT.json").write_text(report)
    (tmp_path / "SCHEDULED.json").write_text(report.replace('"schedule": null', '"schedule": {"warmup": 10}'))
    return tmp_path


def _spell(argv: list[str]) -> list[str]:
    names = {
        "GOOD": "GOOD.csv",
        "HEADER": "HEADER.csv",
        "CURVE": "CURVE.csv",
        "EMPTY": "EMPTY.csv",
        "ONEROW": "ONEROW.csv",
        "DOWN": "DOWN.csv",
        "OUTSIDE": "OUTSIDE.csv",
        "NOTNUMBER": "NOTNUMBER.csv",
        "BADJSON": "BADJSON.json",
        "REPORT": "REPORT.json",
        "SCHEDULED": "SCHEDULED.json",
    }
    return [names.get(a, a) for a in argv]


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES])
def test_refused_at_once_on_one_line(argv, expected, workdir, capsys):
    before = sorted(p.name for p in workdir.iterdir())
    started = time.perf_counter()
    try:
        code = main(_spell(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert seconds < 5.0, f"took {seconds:.1f} s to refuse"
    assert sorted(p.name for p in workdir.iterdir()) == before, "a refused command wrote something"


def test_the_scheduled_report_really_has_a_schedule(workdir):
    """The SCHEDULED fixture differs from the committed report only by its schedule (else the horizon case
    above would test nothing)."""
    import json

    scheduled = json.loads((workdir / "SCHEDULED.json").read_text())
    plain = json.loads((workdir / "REPORT.json").read_text())
    assert plain["best_fit"]["schedule"] is None and scheduled["best_fit"]["schedule"] == {"warmup": 10}
