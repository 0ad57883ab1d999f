"""The README's numbers come from the code: its worked-example table is regenerated and compared."""

import re
import subprocess

import numpy as np

import cpi_theory as cpi


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
