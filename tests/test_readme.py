"""The README's numbers come from the code: its worked-example table is regenerated and compared, its
snippets are run, and every documented command-line example prints what its docs show."""

import pathlib
import re
import subprocess

import numpy as np
import pytest
from _doc_examples import documented_examples, printed
from conftest import REPO

import cpi_theory as cpi
from cpi_theory.cli import main


def test_worked_example_table_matches_simulation(repo_root):
    text = (repo_root / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", text, flags=re.M)
    assert len(rows) >= 5, "worked-example table not found in README.md"
    traj = cpi.simulate()
    for step, mc, att, loss in rows:
        t = int(step)
        np.testing.assert_allclose(
            [traj.context_reliance[t], traj.attention_context[t], traj.loss[t]],
            [float(mc), float(att), float(loss)],
            atol=5e-5,
            err_msg=f"README row for step {t}",
        )
    s = traj.summary()
    assert f"M_C: start {s.start:.3f}, peak {s.peak:.3f} at step {s.peak_step}" in text


def test_ci_runs_the_readme_test_command(repo_root):
    """The command `.ci/run` evaluates is the README's test command: its own extraction line is run on the
    README and compared with the fenced block between the markers, and the script evaluates what it read."""
    ci = (repo_root / ".ci" / "run").read_text()
    readme = (repo_root / "README.md").read_text()
    extraction = re.search(r'^test_command="\$\((.*)\)"$', ci, flags=re.M)
    assert extraction, "no test_command extraction line in .ci/run"
    assert re.search(r'^eval "\$test_command"$', ci, flags=re.M), ".ci/run does not run what it extracted"
    done = subprocess.run(
        ["bash", "-c", extraction.group(1)], cwd=repo_root, capture_output=True, text=True, check=True
    )
    shown = re.search(r"<!-- test-command -->\n```\n(.*?)\n```\n<!-- /test-command -->", readme, flags=re.S)
    assert shown, "no test command block in README.md"
    assert done.stdout.strip() == shown.group(1).strip() != ""


def test_theory_example_prints_what_the_readme_shows(repo_root, capsys):
    """The README's theory snippet is run as written and its output compared with the block below it."""
    text = (repo_root / "README.md").read_text()
    section = text[text.index("## The theory") :]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    shown = re.search(r"<!-- theory-output -->\n```\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(code, "README.md (theory example)", "exec"), {})
    assert capsys.readouterr().out == shown


# Every documented `$ cpi-theory ...` example whose output is shown is run and its printed output compared
# (tests/_doc_examples.py). The advisor's are compared in tests/test_advise.py, on its module fixture, the
# forecast's in tests/test_forecast.py (beside the tests that compile the same sampler).
EXAMPLES = documented_examples(REPO)
RUN_HERE = [e for e in EXAMPLES if e.argv[0] not in ("advise", "forecast")]


def test_every_documented_example_is_compared():
    assert {e.argv[0] for e in EXAMPLES} >= {"simulate", "advise", "bridge"}
    assert all(e.shown.strip() for e in EXAMPLES), [e.id for e in EXAMPLES if not e.shown.strip()]


@pytest.mark.parametrize("example", RUN_HERE, ids=[e.id for e in RUN_HERE])
def test_documented_example_prints_what_the_docs_show(example, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the examples name the repository's files
    # Outputs go to the test's folder: a file name relative to the repository, or a /tmp path.
    argv = list(example.argv)
    for i, arg in enumerate(argv[:-1]):
        if arg in ("--out", "--plot"):
            argv[i + 1] = str(tmp_path / pathlib.PurePath(argv[i + 1]).name)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert printed(captured.out, captured.err) == example.shown
