"""The regime search of issue 13: its pre-registered criterion, its table and its resumption."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))  # the search is a study: experiments/regime_search.py
import regime_search as S  # noqa: E402

SEARCH = REPO / "figures" / "bridge" / "search"


def _bump(n_points=41, peak_at=10, rise=0.08, fall=0.05, start=0.5):
    """Rise by ``rise`` to step ``peak_at``, then fall by ``fall`` to the end."""
    t = np.arange(n_points)
    up = start + rise * np.minimum(t / peak_at, 1.0)
    return up - fall * np.clip((t - peak_at) / max(n_points - 1 - peak_at, 1), 0.0, 1.0)


def _seeds(curve, noise, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([curve + rng.normal(0.0, noise, curve.shape) for _ in range(n)])


def test_criterion_accepts_a_clear_inversion_with_a_flat_control():
    treatment = _seeds(_bump(), 0.003)
    control = _seeds(_bump(fall=0.0), 0.003, seed=1)
    verdict = S.judge(treatment, control)
    assert verdict["inversion"], verdict["failed"]
    assert verdict["treatment"]["depth"] == pytest.approx(0.05, abs=0.01)


@pytest.mark.parametrize(
    ("treatment", "control", "reason"),
    [
        (_seeds(_bump(), 0.003), _seeds(_bump(), 0.003, seed=1), "control falls too"),
        (_seeds(_bump(fall=0.02), 0.002), _seeds(_bump(fall=0.0), 0.002, seed=1), "depth"),
        (_seeds(_bump(rise=0.0, fall=0.05), 0.001), _seeds(_bump(fall=0.0), 0.001, seed=1), "rise"),
        (
            np.stack([_bump(fall=0.10), _bump(fall=0.0), _bump(fall=0.05)]),  # mean fall 0.05, SE 0.029
            _seeds(_bump(fall=0.0), 0.003, seed=1),
            "SE",
        ),
        (_seeds(_bump(), 0.003, n=2), _seeds(_bump(fall=0.0), 0.003, n=2, seed=1), "seed"),
        (_seeds(_bump(peak_at=40, fall=0.0), 0.001), _seeds(_bump(fall=0.0), 0.001, seed=1), "interior"),
    ],
    ids=["control-falls", "too-shallow", "no-rise", "noisy", "two-seeds", "monotone-rise"],
)
def test_criterion_fails_when_it_should(treatment, control, reason):
    verdict = S.judge(treatment, control)
    assert not verdict["inversion"]
    assert any(reason in failure for failure in verdict["failed"]), verdict["failed"]


def test_control_significantly_smaller_passes():
    """A control with some fall (>= 0.01) passes when the treatment's fall is significantly larger."""
    treatment = _seeds(_bump(fall=0.08), 0.002)
    control = _seeds(_bump(fall=0.02), 0.002, seed=1)
    verdict = S.judge(treatment, control)
    assert verdict["control"]["depth"] >= 0.01
    assert verdict["inversion"], verdict["failed"]


def _fake_run(config, seed, checkpoint_root=None, label="", stage=1):
    fall = 0.04 if config["cs_fraction"] > 0 else 0.0
    curve = _bump(n_points=config["steps"] // config["measure_every"] + 1, peak_at=5, fall=fall)
    curve = curve + 0.002 * np.sin(seed + np.arange(curve.size))
    status = "diverged" if config["lr"] > 1 else "ok"
    record = {"key": S.run_key(config, seed), "label": label, "stage": stage, "config": config, "seed": seed}
    if status == "ok":
        record["trajectory"] = {"step": list(range(curve.size)), "context_reliance": curve.tolist()}
    return {**record, "status": status}


SCREEN = (("B", {}), ("B, C+S 0.5", dict(cs_fraction=0.5)), ("B, GD lr 3", dict(optimizer="gd", lr=3.0)))


def test_resumption_table_readback_and_stage2(tmp_path):
    runs_path = tmp_path / "runs.jsonl"
    plan = S.stage1_plan(SCREEN)
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return _fake_run(*args, **kwargs)

    assert (
        S.ensure_runs(plan, runs_path, run_fn=counting, log=lambda _: None) == 5
    )  # B and C+S 0.5 share one control
    assert S.ensure_runs(plan, runs_path, run_fn=counting, log=lambda _: None) == 0  # resumed: nothing new
    assert len(calls) == 5
    runs = S.read_runs(runs_path)
    picks = S.stage2_selection(runs, SCREEN)
    assert [label for label, _ in picks] == ["B", "B, C+S 0.5"]
    S.ensure_runs(S.stage2_plan(runs, screen=SCREEN), runs_path, run_fn=counting, log=lambda _: None)
    table = S.search_table(S.read_runs(runs_path))
    assert "INVERSION" in table and "failed: diverged" in table
    assert table == S.search_table(S.read_runs(runs_path))  # read back from disk: identical


def test_a_real_micro_run_is_resumed(tmp_path):
    config = S.config_of(dict(size="micro", n_finetune=16, steps=10, measure_every=5, lr_mlp=0.0))
    plan = [("micro", 1, config, 0)]
    runs_path = tmp_path / "runs.jsonl"
    assert S.ensure_runs(plan, runs_path, tmp_path / "ckpt", log=lambda _: None) == 1
    assert S.ensure_runs(plan, runs_path, tmp_path / "ckpt", log=lambda _: None) == 0
    (record,) = S.read_runs(runs_path)
    assert record["status"] == "ok" and len(record["trajectory"]["context_reliance"]) == 3


@pytest.mark.skipif(not (SEARCH / "runs.jsonl").exists(), reason="no committed search")
def test_committed_table_is_regenerated_from_runs():
    runs = S.read_runs(SEARCH / "runs.jsonl")
    assert S.search_table(runs) == (SEARCH / "search_table.md").read_text()


def test_the_search_groups_every_parameter_as_qk_vo_mlp_or_other():
    """The search's four groups are the bridge's six with embeddings, unembedding and norms merged."""
    import jax
    from flax import nnx

    from cpi_theory.bridge import ModelConfig, Transformer

    state = nnx.state(Transformer(ModelConfig(vocab_size=20, seq_len=4)), nnx.Param)
    groups = {
        jax.tree_util.keystr(p): S.param_group(jax.tree_util.keystr(p))
        for p, _ in jax.tree_util.tree_leaves_with_path(state)
    }
    # First match wins: norms before "mlp" (norm_mlp), "embed" also covers pos_embed and w_unembed.
    expected = {
        "norm": "other",
        "embed": "other",
        "w_query": "qk",
        "w_key": "qk",
        "w_value": "vo",
        "w_out": "vo",
        "mlp": "mlp",
    }
    for path, group in groups.items():
        name = next(k for k in expected if k in path)
        assert group == expected[name], path
    assert set(groups.values()) == {"qk", "vo", "mlp", "other"}
