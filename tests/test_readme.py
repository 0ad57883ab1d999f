"""The README's numbers come from the code: its worked-example table is regenerated and compared."""

import re

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
    ci = (repo_root / ".ci" / "run").read_text()
    readme = (repo_root / "README.md").read_text()
    assert "<!-- test-command -->" in readme and "test-command" in ci


def test_theory_example_prints_what_the_readme_shows(repo_root, capsys):
    """The README's theory snippet is run as written and its output compared with the block below it."""
    text = (repo_root / "README.md").read_text()
    section = text[text.index("## The theory") :]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    shown = re.search(r"<!-- theory-output -->\n```\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(code, "README.md (theory example)", "exec"), {})
    assert capsys.readouterr().out == shown
