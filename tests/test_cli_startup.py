"""The command line answers at once: ``--help``, argument errors and refused input import no JAX (nor NumPy,
matplotlib, Flax), checked in fresh interpreters; the help is the manual (every option explained, the
configuration keys generated from ``Config``); the CLI's spelled-out choices agree with the package's."""

import argparse
import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest

import cpi_theory
from cpi_theory.cli import _bridge, _manual, _simulate
from cpi_theory.cli._main import build_parser

HEAVY = ("jax", "numpy", "matplotlib", "flax", "scipy", "xarray", "sympy")

# Run main() on each argv in one fresh interpreter; print its exit code and which heavy modules it loaded.
_PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from cpi_theory.cli import main
    HEAVY = json.loads(sys.argv[2])
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code
        results.append({"code": code, "err": err.getvalue()})
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps({"results": results, "loaded": loaded}))
    """
)


def _probe(argvs: list[list[str]], cwd) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _verbs() -> list[list[str]]:
    return [[], ["simulate"], ["sweep"], ["bridge"], ["bridge", "run"], ["bridge", "fit"], ["forecast"],
            ["advise"], ["reproduce"], ["appendix"]]  # fmt: skip


def test_help_of_every_command_imports_nothing_heavy(tmp_path):
    out = _probe([[*verb, "--help"] for verb in _verbs()], tmp_path)
    assert [r["code"] for r in out["results"]] == [0] * len(_verbs())
    assert out["loaded"] == [], f"--help imported {out['loaded']}"


def test_console_script_help_in_a_fresh_process_has_no_jax(tmp_path):
    """`python -m cpi_theory.cli --help` with -X importtime: no JAX module among the imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cpi_theory.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0 and "simulate" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "cpi_theory.cli._main" in imported
    assert not [m for m in imported if m.split(".")[0] in HEAVY]


def test_refusals_come_before_any_heavy_import(tmp_path):
    """Argument errors and refused input of every verb: exit 2, one line, and no JAX loaded to say so."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "header.csv").write_text("step,context_reliance\n")
    (tmp_path / "good.csv").write_text("step,context_reliance\n0,0.5\n1,0.6\n2,0.7\n")
    (tmp_path / "long.csv").write_text(
        "step,context_reliance\n" + "".join(f"{i},0.{i + 1}\n" for i in range(8))
    )
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "down.csv").write_text("step,context_reliance\n0,0.5\n2,0.6\n1,0.7\n")
    argvs = [
        ["simulate", "--engine", "x"],
        ["simulate", "--set", "steps=0"],
        ["simulate", "--set", "delta_m=0.3"],
        ["simulate", "--out", "nodir/sub/o.json"],
        ["simulate", "--out", "o.json", "--plot", "p.txt"],
        ["sweep"],
        ["bridge", "run", "--out", "d", "--steps", "-1"],
        ["bridge", "run", "--out", "d", "--lr", "nan"],
        ["bridge", "fit", "good.csv", "--out", "d", "--lr-v-ratio", "-1"],
        ["bridge", "fit", "good.csv", "--out", "d", "--starts", "0"],
        ["bridge", "fit", "good.csv", "--out", "file"],
        ["bridge", "fit", "header.csv", "--out", "d"],
        ["forecast", "long.csv", "--out", "d", "--until", "-1"],
        ["forecast", "long.csv", "--out", "d", "--until", "20"],
        ["forecast", "long.csv", "--out", "d", "--until", "5", "--horizon", "500"],
        ["forecast", "long.csv", "--out", "file", "--until", "5"],
        ["forecast", "empty.csv", "--out", "d", "--until", "5"],
        ["forecast", "header.csv", "--out", "d", "--until", "5"],
        ["forecast", "down.csv", "--out", "d", "--until", "5"],
        ["advise", "--delta-m", "0.6", "--delta-c", "0.2", "--cs-fraction", "0.5", "--horizon", "300"],
        ["reproduce", "--only", ""],
        ["reproduce", "--outdir", "file"],
        ["appendix", "--outdir", "file"],
    ]
    out = _probe(argvs, tmp_path)
    for argv, result in zip(argvs, out["results"], strict=True):
        assert result["code"] == 2, (argv, result)
        assert len(result["err"].strip().splitlines()) == 1, (argv, result["err"])
    assert out["loaded"] == [], f"refusals imported {out['loaded']}"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["down.csv", "empty.csv", "file", "good.csv", "header.csv", "long.csv"]  # nothing new


def test_package_import_is_lazy_and_every_name_resolves():
    code = textwrap.dedent(
        """
        import sys
        import cpi_theory
        import cpi_theory.cli
        assert "jax" not in sys.modules, "import cpi_theory loaded JAX"
        import cpi_theory.sweep._runner  # binds the subpackage on its parent: the function must stay
        assert callable(cpi_theory.sweep) and cpi_theory.sweep.__module__.startswith("cpi_theory.sweep")
        from cpi_theory import sweep, Config, paper
        assert callable(sweep) and paper.__name__ == "cpi_theory.paper"
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
    for name, module in cpi_theory._EXPORTS.items():
        source = sys.modules[f"cpi_theory.{module}"] if f"cpi_theory.{module}" in sys.modules else None
        value = getattr(cpi_theory, name)
        assert value is getattr(source or __import__(f"cpi_theory.{module}", fromlist=[name]), name), name
        assert name in dir(cpi_theory)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        cpi_theory.nonexistent  # noqa: B018


def test_every_option_is_explained():
    """The help is the manual: every option and positional argument of every command has a text; options
    that take a value state their default (or that they are required)."""
    parser = build_parser()
    stack = [parser]
    checked = 0
    while stack:
        current = stack.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, (current.prog, action.dest)
            takes_value = action.nargs != 0 and not action.required and action.option_strings
            if takes_value:
                said = "default" in action.help.lower() or "required" in action.help
                assert said, f"{current.prog} {action.option_strings}: no default stated"
            checked += 1
    assert checked > 60


def test_simulate_help_lists_every_config_key_with_its_default():
    from cpi_theory.config import Config

    assert set(_manual.CONFIG_MEANINGS) == set(Config.keys())
    table = _manual.config_keys_table()
    for field in dataclasses.fields(Config):
        row = next(line for line in table.splitlines() if line.split()[0] == field.name)
        assert row.split()[1] == repr(field.default)
    help_text = build_parser()._subparsers._group_actions[0].choices["simulate"].format_help()
    assert table in help_text


def test_spelled_out_choices_agree_with_the_package():
    from cpi_theory.bridge._presets import REGIMES, SIZES
    from cpi_theory.bridge._train import OPTIMIZERS, PARAM_SETS
    from cpi_theory.simulation import ENGINES

    assert set(_simulate.ENGINE_CHOICES) == set(ENGINES)
    assert set(_bridge.SIZE_CHOICES) == set(SIZES) and set(_bridge.REGIME_CHOICES) == set(REGIMES)
    assert tuple(_bridge.OPTIMIZER_CHOICES) == tuple(OPTIMIZERS) and tuple(_bridge.PARAM_CHOICES) == tuple(
        PARAM_SETS
    )
    from cpi_theory.bridge import DESIGN_NAMES, get_design

    assert tuple(_bridge.DESIGN_CELLS) == DESIGN_NAMES
    assert _bridge.DESIGN_CELLS == {n: len(get_design(n, "micro").cells) for n in DESIGN_NAMES}
    tiny = SIZES["tiny"].finetune
    assert _bridge.TINY_FINETUNE == {k: getattr(tiny, k) for k in _bridge.TINY_FINETUNE}
    from cpi_theory.figures import packaged_figures
    from cpi_theory.figures._reproduce import packaged_figure_ids

    assert packaged_figure_ids() == list(packaged_figures())


def test_status_line_only_for_work_that_takes_a_while():
    import io
    import time

    from cpi_theory.cli._status import status

    quick = io.StringIO()
    with status("appendix", "deriving", "about 50 s", stream=quick, delay=0.5):
        pass
    assert quick.getvalue() == ""  # a refusal found at once stays the only line
    slow = io.StringIO()
    with status("appendix", "deriving", "about 50 s", stream=slow, delay=0.01):
        time.sleep(0.2)
    first, last = slow.getvalue().splitlines()
    assert first == "cpi-theory appendix: deriving (about 50 s) ..."
    assert last.startswith("cpi-theory appendix: done in ")


@pytest.mark.parametrize(
    "epilog, report",
    [
        ("BRIDGE_FIT_EPILOG", "joint_example/report.json"),
        ("BRIDGE_RUN_EPILOG", "tiny_run/report.json"),
    ],
)
def test_bridge_help_documents_every_key_of_its_report(repo_root, epilog, report):
    """The report formats in `bridge fit --help` / `bridge run --help` name every top-level key of a
    committed report (and of the joint fit's best_fit)."""
    text = getattr(_manual, epilog)
    data = json.loads((repo_root / "figures" / "bridge" / report).read_text())
    keys = set(data) | set(data.get("best_fit", {}))
    missing = sorted(k for k in keys if k not in text)
    assert missing == []
