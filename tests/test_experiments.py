"""The figures: `reproduce --quick` runs F1-F7 once (module fixture, ~2 min on 2 cores) and each figure's
headline claim is asserted from the data it wrote; determinism, the repository's thin scripts, running from
an empty directory, plotting outside pyplot and the CLI are checked too."""

import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

import cpi_theory as ct
from cpi_theory.cli import main
from cpi_theory.engine import summarize
from cpi_theory.figures import _reproduce as rp
from cpi_theory.figures import load_dataset, packaged_figures

STEMS = (
    "f1_inversion",
    "f2_time_scales",
    "f3_phase_diagram",
    "f4_mitigations",
    "f5_self_aligning",
    "f6_with_without_context",
    "f7_designed_mixtures",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    # The figures shipped in the package (no experiments/ directory involved).
    outdir = tmp_path_factory.mktemp("figures")
    entries = ct.reproduce(str(outdir), quick=True, progress=False)
    return outdir, {e["figure"]: e for e in entries}


def data(quick_run, stem):
    return load_dataset(str(quick_run[0] / f"{stem}.nc"))


def test_all_figures_written_and_indexed(quick_run):
    outdir, entries = quick_run
    assert list(entries) == ["F1", "F2", "F3", "F4", "F5", "F6", "F7"]
    for entry in entries.values():
        for name in entry["files"]:
            assert (outdir / name).stat().st_size > 0
        assert {f.rsplit(".", 1)[1] for f in entry["files"]} == {"nc", "png", "pdf"}
    index = (outdir / "INDEX.md").read_text()
    for figure in entries:
        assert f"## {figure}:" in index
        assert f"cpi-theory reproduce --quick --only {figure}" in index
    # The index names the repository's scripts, as when they were run from experiments/.
    for figure, stem in zip(entries, STEMS, strict=True):
        assert entries[figure]["script"] == f"{stem}.py"
        assert f"(or `python experiments/{stem}.py --quick --outdir <dir>`)" in index


def test_index_numbers_match_data(quick_run):
    index = (quick_run[0] / "INDEX.md").read_text()
    f1 = data(quick_run, "f1_inversion")
    mc = f1.context_reliance.values
    assert f"| M_C peak | {mc.max():.4g} |" in index
    assert f"| M_C start | {mc[0]:.4g} |" in index
    f3 = data(quick_run, "f3_phase_diagram")
    assert f"| max depth (delta_M panel) | {f3.depth_vs_delta_m.values.max():.4g} |" in index


def test_f1_rise_then_fall(quick_run):
    s = summarize(*(lambda d: (d.step.values, d.context_reliance.values))(data(quick_run, "f1_inversion")))
    assert s.peak > s.start + 0.3
    assert s.final < s.peak - 0.2
    assert s.final > s.start  # the plateau stays above the start (SPEC §5)
    # The closed-form plateau of cpi_theory.paper._analysis is approached from above.
    plateau = float(data(quick_run, "f1_inversion").analytic_plateau.values)
    assert 0 < s.final - plateau < 0.03


def test_f2_curves_collapse_in_lr_t(quick_run):

    ds = data(quick_run, "f2_time_scales")
    lrs, curves, step = ds.lr.values, ds.context_reliance.values, ds.step.values
    ref_valid = np.isfinite(curves[0])
    deviations = []
    for lr, curve in zip(lrs, curves, strict=True):
        valid = np.isfinite(curve)
        ref = np.interp(step[valid] * lr, step[ref_valid] * lrs[0], curves[0][ref_valid])
        deviations.append(np.max(np.abs(curve[valid] - ref)))
    # Collapse: lr = 2 x the reference differs by < 0.02 in M_C at equal lr*t; raw step curves do not
    # (lr = 4 reaches the peak in ~8 steps, lr = 0.5 in ~64).
    assert deviations[1] < 0.02
    assert np.all(np.diff(deviations) > 0)  # the collapse degrades as lr grows (discrete steps)
    mc = ds.one_step_context_reliance.values
    holds = (mc[:, 1] > mc[:, 0]) & (mc[:, 1] > mc[:, 2])
    assert holds.any() and not holds[0]  # Theorem 1 needs a large learning rate


def test_f3_depth_larger_at_high_cs_fraction(quick_run):
    ds = data(quick_run, "f3_phase_diagram")
    frac = ds.cs_fraction.values
    for key in ("delta_m", "delta_c"):
        depth = ds[f"depth_vs_{key}"].values
        assert depth[frac >= 0.5].mean() > depth[frac <= 0.25].mean() + 0.1
        assert np.all(depth[frac == 0] < 1e-3)  # no C+S point: no fall
        # the infinite horizon: the limit switches at C+S fraction 1/2 whatever the delta (late-time law);
        # below it M_C ends above its final value at the horizon, above it below
        assert np.all(ds[f"infinite_boundary_vs_{key}"].values == 0.5)
        limit, final = ds[f"limit_vs_{key}"].values, ds[f"final_vs_{key}"].values
        assert np.all(limit[frac < 0.5] > final[frac < 0.5]) and np.all(limit[frac > 0.5] < final[frac > 0.5])


def test_f4_mitigations(quick_run):
    ds = data(quick_run, "f4_mitigations")
    mc = ds.context_reliance.values
    depth = summarize(ds.step.values, mc).depth
    fam = ds.family.values
    filtering = np.flatnonzero(fam == "filtering")
    assert depth[filtering[0]] > 0.2  # paper default
    assert depth[filtering[-1]] < 1e-3 and mc[filtering[-1], -1] > 0.9  # all C+S filtered: no fall
    aug = np.flatnonzero(fam == "augmentation")
    assert mc[aug[-1], -1] > mc[aug[0], -1] + 0.2  # augmentation raises the final M_C
    vt = np.flatnonzero(fam == "value_training")
    assert ds.lr_v.values[vt[-1]] == 1.0 and depth[vt[-1]] < 0.01  # lr_v = lr_kq: no inversion (toy vs paper)


def test_f5_self_aligning_beats_incompatible(quick_run):
    ds = data(quick_run, "f5_self_aligning")
    self_aligning = ds.sel(condition="incompatible=0")
    incompatible = ds.sel(condition="incompatible=1")
    assert float(ds.accuracy_pre.max()) < 1.0  # the model's own answer is sometimes wrong
    assert float(self_aligning.kl.mean()) < float(incompatible.kl.mean())
    assert float(self_aligning.rank_correlation.mean()) > float(incompatible.rank_correlation.mean())
    assert float(self_aligning.accuracy_post.mean()) > float(incompatible.accuracy_post.mean())
    assert float(self_aligning.finetune_fit.mean()) == 1.0


def test_f6_context_training_memorizes_less_and_router_wins(quick_run):
    ds = data(quick_run, "f6_with_without_context")
    mem = ds.memorized_probability.values
    assert ds.context_fraction.values[0] == 0.0 and ds.context_fraction.values[-1] == 1.0
    assert mem[0] > mem[-1] + 0.5
    assert ds.attention_context.values[-1] > 0.9
    probability = ds.suite.sel(kind="probability").values.mean(axis=-1)
    mixed, router = probability
    assert router > mixed


def test_quick_experiment_is_byte_deterministic(quick_run, repo_root, tmp_path):
    """Run F1 and F6 again into a fresh directory, through the repository's thin scripts (--experiments-dir):
    data, PDF and PNG files are byte-identical to the package's run."""
    ct.reproduce(
        str(tmp_path),
        quick=True,
        only="F1,F6",
        experiments_dir=str(repo_root / "experiments"),
        progress=False,
    )
    for stem in ("f1_inversion", "f6_with_without_context"):
        for ext in ("nc", "pdf", "png"):
            first = (quick_run[0] / f"{stem}.{ext}").read_bytes()
            assert (tmp_path / f"{stem}.{ext}").read_bytes() == first, f"{stem}.{ext} differs"
    # --only keeps INDEX.md to the figures run into this directory.
    assert re.findall(r"^## (F\d):", (tmp_path / "INDEX.md").read_text(), flags=re.M) == ["F1", "F6"]


def test_cli_errors(tmp_path, capsys, repo_root):
    assert (
        main(
            [
                "reproduce",
                "--only",
                "F9",
                "--outdir",
                str(tmp_path),
                "--experiments-dir",
                str(repo_root / "experiments"),
            ]
        )
        == 2
    )
    assert "unknown figure(s) F9" in capsys.readouterr().err
    assert main(["reproduce", "--only", "F9", "--outdir", str(tmp_path)]) == 2
    assert "unknown figure(s) F9 (available: F1, F2, F3, F4, F5, F6, F7)" in capsys.readouterr().err
    assert main(["reproduce", "--experiments-dir", str(tmp_path / "nope"), "--outdir", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["reproduce", "--experiments-dir", str(tmp_path / "empty"), "--outdir", str(tmp_path)]) == 2
    assert "no figure files (fN_*.py)" in capsys.readouterr().err


def test_packaged_figures_in_order(tmp_path, monkeypatch, repo_root):
    figures = packaged_figures()
    assert list(figures) == ["F1", "F2", "F3", "F4", "F5", "F6", "F7"]
    assert [rp.script_name(m) for m in figures.values()] == [f"{stem}.py" for stem in STEMS]
    for module in figures.values():
        assert module.__name__.startswith("cpi_theory.figures._f")
        assert callable(module.run) and module.TITLE
    # --experiments-dir loads the files of that directory, by path.
    assert list(rp.experiment_files(rp.find_experiments_dir(str(repo_root / "experiments")))) == list(figures)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "f1_x.py").write_text("")
    assert rp.find_experiments_dir("experiments").resolve() == (tmp_path / "experiments").resolve()
    with pytest.raises(ValueError, match="does not define FIGURE"):
        rp.load_experiment(tmp_path / "experiments" / "f1_x.py")
    assert rp.select(["F1", "F2"], "f2") == ["F2"]


def test_reproduce_from_an_empty_directory(quick_run, tmp_path):
    """`python -m cpi_theory.cli reproduce` needs no experiments/ directory: the figures ship in the package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "cpi_theory.cli", "reproduce", "--quick", "--only", "F1", "--outdir", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1 figure(s) and out/INDEX.md: F1" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    out = tmp_path / "out"
    assert re.findall(r"^## (F\d):", (out / "INDEX.md").read_text(), flags=re.M) == ["F1"]
    for ext in ("nc", "pdf", "png"):
        assert (out / f"f1_inversion.{ext}").read_bytes() == (
            quick_run[0] / f"f1_inversion.{ext}"
        ).read_bytes()


def test_thin_script_runs_the_packaged_figure(quick_run, repo_root, tmp_path, monkeypatch, capsys):
    """`python experiments/f1_inversion.py --quick --outdir DIR` (run here in-process) writes the same files."""
    monkeypatch.setattr(sys, "argv", ["f1_inversion.py", "--quick", "--outdir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(repo_root / "experiments" / "f1_inversion.py"), run_name="__main__")
    assert exit_.value.code == 0
    entry = quick_run[1]["F1"]
    assert f"M_C peak: {entry['numbers']['M_C peak']:.4g}" in capsys.readouterr().out
    for ext in ("nc", "pdf", "png"):
        assert (tmp_path / f"f1_inversion.{ext}").read_bytes() == (
            quick_run[0] / f"f1_inversion.{ext}"
        ).read_bytes()


_PLOT_OUTSIDE_PYPLOT = """
import sys
import matplotlib

matplotlib.use("svg")  # the user's choice: importing or using the figures must not change it
before = dict(matplotlib.rcParams)
from cpi_theory.figures import load_dataset, packaged_figures

module = packaged_figures()["F1"]
module.plot(load_dataset(sys.argv[1]), sys.argv[2])
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules, "the figures must not use pyplot"
assert dict(matplotlib.rcParams) == before, "the figure style leaked into the caller's rcParams"
"""


def test_figures_plot_outside_pyplot(quick_run, tmp_path):
    """No backend switch at import, no pyplot state, rcParams restored; the bytes are those of the run."""
    stem = tmp_path / "f1_inversion"
    proc = subprocess.run(
        [sys.executable, "-c", _PLOT_OUTSIDE_PYPLOT, str(quick_run[0] / "f1_inversion.nc"), str(stem)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for ext in ("pdf", "png"):
        assert (tmp_path / f"f1_inversion.{ext}").read_bytes() == (
            quick_run[0] / f"f1_inversion.{ext}"
        ).read_bytes()
