"""Bad input is rejected with one line naming the key and the rule (exit code 2 on the CLI, no traceback)."""

import json
import re
import subprocess
import sys

import pytest

import cpi_theory as cpi
from cpi_theory.cli import main

BAD_INPUTS = [
    ({"foo": 1}, "foo", "unknown config key"),
    ({"n_answers": "many"}, "n_answers", "must be an integer"),
    ({"delta_c": "0.2"}, "delta_c", "must be a real number"),
    ({"delta_c": 1.5}, "delta_c", "strictly between 0 and 1"),
    ({"delta_m": 0.0}, "delta_m", "strictly between 0 and 1"),
    ({"n_context_critical": -1}, "n_context_critical", "must be >= 0"),
    ({"lr_kq": -0.1}, "lr_kq", "must be >= 0"),
    ({"lr_v": -1}, "lr_v", "must be >= 0"),
    ({"delta_m": 0.4}, "delta_m", "must be > 2\\*delta_c"),
    ({"n_answers": 20}, "n_answers", "vocabulary too small"),
    ({"n_subjects": 15}, "n_subjects", "vocabulary too small"),
    ({"lr_kq": float("inf")}, "lr_kq", "must be finite"),
    ({"o_c": float("nan")}, "o_c", "must be finite"),
    ({"o_r": 1000.0}, "o_r", r"\[-700, 700\]"),
    ({"steps": 2.5}, "steps", "must be an integer"),
    ({"record_every": 0}, "record_every", "must be >= 1"),
    ({"n_context_critical": True}, "n_context_critical", "got bool"),
    ({"n_context_critical": 0, "n_non_context_critical": 0}, "n_context_critical", "training set is empty"),
]


@pytest.mark.parametrize("overrides,key,rule", BAD_INPUTS)
def test_config_rejects(overrides, key, rule):
    with pytest.raises(cpi.ConfigError, match=rule) as info:
        cpi.Config.from_mapping(overrides)
    assert info.value.key == key


@pytest.mark.parametrize("overrides,key,rule", BAD_INPUTS)
def test_cli_rejects_with_exit_code_2(overrides, key, rule, tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(overrides))  # NaN/inf are written as JSON's NaN/Infinity extensions
    code = main(["simulate", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and key in err
    assert "Traceback" not in err


def test_cli_set_values_are_typed(capsys):
    assert main(["simulate", "--set", "n_answers=abc"]) == 2
    assert "n_answers: must be an integer, got str 'abc'" in capsys.readouterr().err
    assert main(["simulate", "--set", "novalue"]) == 2
    assert "expected key=value" in capsys.readouterr().err


def test_cli_malformed_json_file(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"delta_c": 0.2,,}')
    assert main(["simulate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "line 1" in err
    assert main(["simulate", "--config", str(tmp_path / "missing.json")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_writes_reference_format(tmp_path, capsys):
    out = tmp_path / "run.json"
    plot = tmp_path / "run.png"
    assert main(["simulate", "--set", "steps=20", "--out", str(out), "--plot", str(plot)]) == 0
    data = json.loads(out.read_text())
    assert set(data["config"]) == set(cpi.Config.keys())
    assert len(data["step"]) == len(data["context_reliance"]) == len(data["loss"]) == 21
    assert plot.stat().st_size > 0
    assert capsys.readouterr().err.startswith("M_C: start 0.290")


def test_cli_without_out_prints_the_summary_and_asks_for_out(capsys):
    """A terminal gets one summary line, not thousands of lines of JSON; --json prints the JSON."""
    assert main(["simulate", "--set", "steps=2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    summary, hint = captured.err.splitlines()
    assert summary.startswith("M_C: start 0.290") and "--out FILE.json" in hint and "--json" in hint
    assert main(["simulate", "--set", "steps=2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == [0, 1, 2]


def test_simulate_help_documents_every_key_of_its_output(tmp_path, capsys):
    """The output format in `simulate --help` names every top-level key the JSON has, and nothing else."""
    from cpi_theory.cli._manual import simulate_epilog

    out = tmp_path / "run.json"
    assert main(["simulate", "--set", "steps=2", "--out", str(out)]) == 0
    section = simulate_epilog().split("output (")[1].split("\n  Without")[0]
    names = re.findall(r"^  ([a-z_]+(?:, [a-z_]+)*)", section, flags=re.M)
    documented = {name for line in names for name in line.split(", ")}
    assert documented == set(json.loads(out.read_text()))


def test_console_script_bad_input_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "cpi_theory.cli", "simulate", "--set", "delta_m=0.3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "cpi-theory simulate: error: delta_m: must be > 2*delta_c (memory beats self-copy, paper Assumption 6),"
        " got delta_m=0.3, delta_c=0.2"
    )


def test_float64_is_required_by_the_library():
    code = "import cpi_theory\ntry:\n    cpi_theory.simulate()\nexcept cpi_theory.Float64Required as e:\n    print('refused:', e)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""})
    assert proc.stdout.startswith("refused: cpi_theory's theory code runs in float64")
