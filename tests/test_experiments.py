"""The figure experiments: `reproduce --quick` runs F1-F6 once (module fixture, ~2-3 min on 2 cores) and each
figure's headline claim is asserted from the data it wrote; determinism and the CLI are checked too."""

import re

import numpy as np
import pytest

import cpi_theory as ct
from cpi_theory.cli import main
from cpi_theory.figures import _reproduce as rp
from cpi_theory.phenomena import _batch as ph


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, repo_root):
    outdir = tmp_path_factory.mktemp("figures")
    entries = ct.reproduce(
        str(outdir), quick=True, experiments_dir=str(repo_root / "experiments"), progress=False
    )
    return outdir, {e["figure"]: e for e in entries}


def data(quick_run, stem):
    return ph.load_dataset(str(quick_run[0] / f"{stem}.nc"))


def test_all_figures_written_and_indexed(quick_run):
    outdir, entries = quick_run
    assert list(entries) == ["F1", "F2", "F3", "F4", "F5", "F6"]
    for entry in entries.values():
        for name in entry["files"]:
            assert (outdir / name).stat().st_size > 0
        assert {f.rsplit(".", 1)[1] for f in entry["files"]} == {"nc", "png", "pdf"}
    index = (outdir / "INDEX.md").read_text()
    for figure in entries:
        assert f"## {figure}:" in index
        assert f"cpi-theory reproduce --quick --only {figure}" in index


def test_index_numbers_match_data(quick_run):
    index = (quick_run[0] / "INDEX.md").read_text()
    f1 = data(quick_run, "f1_inversion")
    mc = f1.context_reliance.values
    assert f"| M_C peak | {mc.max():.4g} |" in index
    assert f"| M_C start | {mc[0]:.4g} |" in index
    f3 = data(quick_run, "f3_phase_diagram")
    assert f"| max depth (delta_M panel) | {f3.depth_vs_delta_m.values.max():.4g} |" in index


def test_f1_rise_then_fall(quick_run):
    s = ph.inversion_summary(
        *(lambda d: (d.step.values, d.context_reliance.values))(data(quick_run, "f1_inversion"))
    )
    assert s["peak"] > s["start"] + 0.3
    assert s["final"] < s["peak"] - 0.2
    assert s["final"] > s["start"]  # the plateau stays above the start (SPEC §5)
    # The closed-form plateau of cpi_theory.paper._analysis is approached from above.
    plateau = float(data(quick_run, "f1_inversion").analytic_plateau.values)
    assert 0 < s["final"] - plateau < 0.03


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


def test_f4_mitigations(quick_run):
    ds = data(quick_run, "f4_mitigations")
    mc = ds.context_reliance.values
    depth = ph.inversion_depth(mc)
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
    """Run F1 and F6 again into a fresh directory: data, PDF and PNG files are byte-identical."""
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
    assert main(["reproduce", "--experiments-dir", str(tmp_path / "nope"), "--outdir", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_find_experiments_dir(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)
    # Not in the cwd: falls back to the clone next to the package source (editable install).
    assert rp.find_experiments_dir() == repo_root / "experiments"
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "f1_x.py").write_text("")
    assert rp.find_experiments_dir() == tmp_path / "experiments"
    assert rp.select(["F1", "F2"], "f2") == ["F2"]
