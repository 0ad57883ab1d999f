"""Round two of the bridge (issue 22): the gate, per-group rates and freezing, fresh C points, the split
world and its matched control, the designs as presets, and the toy out of sample. All at ``micro`` size."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpi_theory._errors import ConfigError
from cpi_theory.bridge import (
    DESIGN_NAMES,
    GROUPS,
    Member,
    Recipe,
    curve_numbers,
    finetune_members,
    gate,
    gate_line,
    get_design,
    make_fact_world,
    param_group,
    predict_arms,
    score_prediction,
)
from cpi_theory.bridge._recipe import _batch, _member_data, _split
from cpi_theory.config._data_class import DataClass

C, CS = DataClass.CONTEXT_CRITICAL, DataClass.NON_CONTEXT_CRITICAL


# --- the gate -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "passed", "reason"),
    [
        (dict(delta_m=0.65, delta_c=0.13, context_reliance=0.3), True, None),
        (dict(delta_m=0.65, delta_c=0.33, context_reliance=0.3), False, "delta_M"),
        (dict(delta_m=0.65, delta_c=0.1, context_reliance=0.05), False, "M_C(0)"),
        (dict(delta_m=0.65, delta_c=0.1, context_reliance=0.6), False, "M_C(0)"),  # the bound is open
        (dict(delta_m=0.2, delta_c=0.1, context_reliance=0.97), False, "delta_M"),
    ],
)
def test_gate(start, passed, reason):
    verdict = gate(start)
    assert verdict["passed"] is passed
    assert (not verdict["failed"]) is passed
    if reason:
        assert any(reason in f for f in verdict["failed"])
    line = gate_line(verdict)
    assert ("PASS" in line) is passed and f"{start['context_reliance']:.3f}" in line


# --- the world: split answers, stream subjects, the matched control --------------------------------
def _world(**kw):
    design = get_design("V1", "micro")
    return make_fact_world(design.world_config(0, **kw))


def test_split_world_keeps_context_answers_out_of_memory():
    world = _world(cs_fraction=0.5)
    fact, context = set(world.fact_answer_ids.tolist()), set(world.context_answer_ids.tolist())
    assert fact and context and not fact & context
    assert set(world.known_answers.tolist()) <= fact
    assert set(world.counterfactual_contexts.tolist()) <= fact
    assert set(world.finetune[C].targets.tolist()) <= context  # fixed C contexts: context-only answers
    assert set(world.finetune[CS].targets.tolist()) <= fact
    used = set(world.known_subjects.tolist()) | set(world.copy_subjects.tolist())
    assert len(world.stream_subjects) and not set(world.stream_subjects.tolist()) & used


def test_matched_control_changes_only_the_subject():
    treatment, control = _world(cs_fraction=0.5), _world(cs_fraction=0.5, cs_as_c=True)
    assert len(control.finetune[CS].targets) == 0
    n_c = len(treatment.finetune[C].targets)
    ctl_tokens, ctl_targets = control.finetune[C].tokens, control.finetune[C].targets
    np.testing.assert_array_equal(ctl_tokens[:n_c], treatment.finetune[C].tokens)
    moved = ctl_tokens[n_c:]
    np.testing.assert_array_equal(ctl_targets[n_c:], treatment.finetune[CS].targets)  # same answers
    same = np.ones(moved.shape[1], bool)
    same[-2] = False  # [CTX, c, Q, s, R]: only the subject differs
    np.testing.assert_array_equal(moved[:, same], treatment.finetune[CS].tokens[:, same])
    assert not set(moved[:, -2].tolist()) & set(treatment.known_subjects.tolist())
    # and the probes (what M_C is measured on) are the same in both arms
    np.testing.assert_array_equal(
        control.counterfactual_probe().tokens, treatment.counterfactual_probe().tokens
    )


def test_default_world_has_no_split():
    from cpi_theory.bridge import FactWorldConfig

    world = make_fact_world(FactWorldConfig(n_answers=8, n_known_facts=24, n_probe=8, n_copy_subjects=8,
                                            n_finetune=8, n_distractor_vocab=4))  # fmt: skip
    np.testing.assert_array_equal(world.fact_answer_ids, world.context_answer_ids)
    assert len(world.stream_subjects) == 0
    with pytest.raises(ConfigError, match="cs_as_c"):
        FactWorldConfig(cs_as_c=True, filter_cs=True)


# --- recipes: groups, freezing, multipliers, fresh C points ---------------------------------------
@pytest.fixture(scope="module")
def micro_model():
    from cpi_theory.bridge import Transformer

    design = get_design("V1", "micro")
    world = make_fact_world(design.world_config(0, cs_fraction=0.5))
    return Transformer(design.model_config("h4", world.config, 0)), world


def test_every_parameter_has_a_group_and_freezing_leaves_it_out(micro_model):
    model, _ = micro_model
    for recipe, live in [
        (Recipe(lr_vo=0.0, lr_mlp=0.0, lr_embed=0.0, lr_unembed=0.0, lr_norm=0.0), {"qk"}),
        (Recipe(lr_qk=0.0, lr_mlp=0.03, lr_embed=0.0, lr_unembed=0.0, lr_norm=0.0), {"vo", "mlp"}),
        (Recipe(), set(GROUPS)),
    ]:
        _, trainable, frozen, _ = _split(model, recipe, 0)
        groups = lambda state: {
            param_group(jax.tree_util.keystr(p)) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]
        }
        assert groups(trainable) == live
        assert not groups(frozen) & live


def test_recipe_refuses_bad_knobs():
    with pytest.raises(ConfigError, match="lr_mlp"):
        Recipe(lr_mlp=-1.0)
    with pytest.raises(ConfigError, match="every group is frozen"):
        Recipe(**{f"lr_{g}": 0.0 for g in GROUPS})
    with pytest.raises(ConfigError, match="decay"):
        Recipe(decay="exp")


def test_multiplier_scales_the_step(micro_model):
    """GD with lr 10 and query/key x2 is GD with lr 20 and query/key x1, and moves M_C about twice as far as
    lr 20 at half the rate (the member's lr scale 0.5): the multiplier is applied, to query/key."""
    model, world = micro_model
    frozen = dict(lr_vo=0.0, lr_mlp=0.0, lr_embed=0.0, lr_unembed=0.0, lr_norm=0.0)
    a = Recipe(steps=3, optimizer="gd", lr=20.0, lr_qk=1.0, n_measure=1, **frozen)
    b = dataclasses.replace(a, lr=10.0, lr_qk=2.0)
    full, doubled = (finetune_members([model], [Member(world)], r)[0]["context_reliance"] for r in (a, b))
    half = finetune_members([model], [Member(world, lr_scale=0.5)], a)[0]["context_reliance"]
    np.testing.assert_allclose(full, doubled, rtol=1e-6)
    moved, moved_half = full[-1] - full[0], half[-1] - half[0]
    assert abs(moved) > 1e-5  # it trained
    assert 1.6 < moved / moved_half < 2.4, (moved, moved_half)  # (the untrained model: near-linear steps)


def test_fresh_c_points_are_new_each_step_and_never_memorized():
    world = _world(cs_fraction=1.0)
    data = {k: jnp.asarray(v) for k, v in _member_data(Member(world, fresh_share=0.5)).items()}
    key = jax.random.key(3)
    rows = [_batch(key, jnp.asarray(s, jnp.int32), data, 8, 16) for s in range(3)]
    stream = set(world.stream_subjects.tolist())
    fresh_subjects = []
    for tokens, targets in rows:
        tokens, targets = np.asarray(tokens), np.asarray(targets)
        fresh = tokens[8:]
        assert set(fresh[:, 3].tolist()) <= stream  # [CTX, c, Q, s, R]: a stream subject
        np.testing.assert_array_equal(fresh[:, 1], targets[8:])  # its answer is its context
        assert set(targets[8:].tolist()) <= set(world.fact_answer_ids.tolist())
        fixed = tokens[:8]
        assert not set(fixed[:, 3].tolist()) & stream  # fixed rows are the world's C+S points
        fresh_subjects.append(tuple(fresh[:, 3]))
    assert len(set(fresh_subjects)) == 3  # drawn anew each step


# --- designs as presets ----------------------------------------------------------------------------
def test_designs_are_named_presets():
    assert DESIGN_NAMES == ("V1", "V2", "V3")
    v1 = get_design("V1", "micro")
    assert {c.recipe.optimizer for c in v1.cells} == {"gd"}
    assert {c.recipe.lr for c in v1.cells} == {1.0, 3.0}
    assert all(c.recipe.trained_groups == ("qk",) and c.recipe.batch_size is None for c in v1.cells)
    assert all(len(c.controls) == 1 and c.controls[0].world.get("cs_as_c") for c in v1.cells)
    v2 = get_design("V2", "micro")
    assert all(c.recipe.multipliers["vo"] == 0.03 and c.recipe.multipliers["embed"] == 0 for c in v2.cells)
    assert any(a.fresh_share == 1.0 and a.control for c in v2.cells for a in c.arms)
    v3 = get_design("V3", "micro")
    assert {c.recipe.lora_rank for c in v3.cells} == {8, 0}
    assert get_design("V1", "tiny").cells[0].recipe.steps == 10_000
    with pytest.raises(ConfigError, match="design"):
        get_design("V4")


def test_members_together_equal_members_alone(micro_model):
    """Two members vmapped in one program draw the same data and reach the same curves as alone."""
    model, world = micro_model
    control = make_fact_world(get_design("V1", "micro").world_config(0, cs_fraction=0.5, cs_as_c=True))
    frozen = dict(lr_vo=0.0, lr_mlp=0.0, lr_embed=0.0, lr_unembed=0.0, lr_norm=0.0)
    recipe = Recipe(steps=4, optimizer="gd", lr=1.0, n_measure=2, **frozen)
    together = finetune_members([model, model], [Member(world), Member(control)], recipe, seeds=[0, 1])
    alone = [
        finetune_members([model], [Member(w)], recipe, seeds=[s])[0] for s, w in ((0, world), (1, control))
    ]
    for t, a in zip(together, alone, strict=True):
        np.testing.assert_allclose(t["context_reliance"], a["context_reliance"], rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(t["context_reliance"])) and t["diverged_step"] is None
    assert not np.allclose(together[0]["loss_cs"][-1:], together[1]["loss_cs"][-1:], equal_nan=True)


# --- the toy out of sample -------------------------------------------------------------------------
def test_curve_numbers_and_scoring():
    steps = np.arange(11.0)
    bump = np.concatenate([np.linspace(0.3, 0.4, 5), np.linspace(0.4, 0.34, 6)[1:], [0.34]])
    n = curve_numbers(steps, bump)
    assert n["inverts"] and n["peak_step"] == 4 and n["depth"] == pytest.approx(0.06)
    flat = curve_numbers(steps, np.full(11, 0.3))
    assert not flat["inverts"]
    hit = score_prediction(n, n, True)
    assert hit == {"inversion": True, "peak_step": True, "depth": True}
    off = dict(n, peak_step=8.0, depth=0.2)
    assert score_prediction(off, n, True) == {"inversion": True, "peak_step": False, "depth": False}
    assert score_prediction(flat, n, True)["inversion"] is False


def test_toy_recovers_its_own_time_scale_and_predicts_its_own_arms():
    """Fed the toy's own control curve at a known time scale, predict_arms finds that time scale and
    predicts exactly the toy's C+S curves; a control from a different time scale gives other predictions."""
    import cpi_theory

    cpi_theory.enable_float64()
    start = dict(delta_m=0.65, delta_c=0.12, context_reliance=0.3)
    steps = np.concatenate([[0.0], np.geomspace(1, 200, 20).round()])
    steps = np.unique(steps)
    first = predict_arms(start, steps, 0.3 + 0.4 * (1 - np.exp(-steps / 60)), {"C+S 0.5": 0.5}, horizon=400)
    assert 1e-3 < first["time_scale"] < 2.0 and not first["time_scale_at_bound"]
    again = predict_arms(start, steps, np.asarray(first["control_curve"]), {"C+S 0.5": 0.5}, horizon=400)
    assert again["time_scale"] == pytest.approx(first["time_scale"], rel=1e-3)
    assert again["control_rmse"] < 1e-4
    np.testing.assert_allclose(
        again["arms"]["C+S 0.5"]["curve"], first["arms"]["C+S 0.5"]["curve"], atol=1e-4
    )
    assert again["toy"]["context_bias"] == pytest.approx(first["toy"]["context_bias"])
    # the toy starts where the model does
    assert again["arms"]["C+S 0.5"]["curve"][0] == pytest.approx(0.3, abs=1e-3)
    slower = predict_arms(start, steps, 0.3 + 0.4 * (1 - np.exp(-steps / 600)), {"C+S 0.5": 0.5}, horizon=400)
    assert slower["time_scale"] < 0.5 * first["time_scale"]


def test_cli_runs_one_cell_of_a_design(tmp_path, capsys):
    """`cpi-theory bridge run --design V1 --size micro`: the gate line, then the cell's two arms."""
    import json

    from cpi_theory.cli import main

    code = main(["bridge", "run", "--design", "V1", "--size", "micro", "--steps", "5", "--seed", "0",
                 "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "ck")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "gate: delta_M" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["design"] == "V1" and report["recipe"]["steps"] == 5
    # Whether a micro seed passes is a threshold event that small numerical differences flip (micro seed 0:
    # M_C(0) 0.23 in a plain process, 0.06 under this suite's JAX settings), so both outcomes are checked.
    assert f"{report['start']['context_reliance']:.3f}" in printed
    if report["gate"]["passed"]:
        assert code == 0
        assert set(report["arms"]) == {"C+S 0.5", "control: C+S -> C (matched)"}
        for arm in report["arms"].values():
            assert arm["trajectory"]["step"][-1] == 5 and len(arm["trajectory"]["context_reliance"]) >= 2
    else:
        assert code == 1 and not report["arms"] and "fails the gate" in printed


def test_schedule_warmup_then_decay():
    cosine = Recipe(steps=10, warmup=2, decay="cosine", n_measure=2)
    factors = np.asarray(cosine.schedule_factor(np.arange(10)))
    np.testing.assert_allclose(factors[:2], [0.5, 1.0])
    np.testing.assert_allclose(factors[2], 1.0)
    assert np.all(np.diff(factors[2:]) < 0)
    assert factors[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 7 / 8)), rel=1e-5)  # float32
    linear = np.asarray(Recipe(steps=4, decay="linear", n_measure=2).schedule_factor(np.arange(4)))
    np.testing.assert_allclose(linear, [1.0, 0.75, 0.5, 0.25])
    grid = Recipe(steps=1000, n_measure=5).measure_steps()
    assert grid[0] == 0 and grid[-1] == 1000 and np.all(np.diff(grid) > 0)


def test_lora_starts_at_the_base_model_and_trains_only_its_factors(micro_model):
    """LoRA (B = 0 at start): step 0 measures the base model exactly; after steps M_C has moved."""
    model, world = micro_model
    base = Recipe(steps=2, optimizer="adam", lr=1e-2, n_measure=1, lr_mlp=0.0, lr_embed=0.0,
                  lr_unembed=0.0, lr_norm=0.0)  # fmt: skip
    lora = dataclasses.replace(base, lora_rank=2, lora_targets=("q", "v"))
    assert lora.trained_groups == ("qk", "vo")
    _, trainable, frozen, lora_graph = _split(model, lora, 0)
    assert lora_graph is not None
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(trainable)[0]]
    assert names and all("lora_" in n for n in names)
    a, b = (finetune_members([model], [Member(world)], r)[0] for r in (base, lora))
    assert a["context_reliance"][0] == pytest.approx(b["context_reliance"][0], abs=1e-6)
    assert abs(b["context_reliance"][-1] - b["context_reliance"][0]) > 1e-5


ROUND2 = Path(__file__).resolve().parents[1] / "figures" / "bridge" / "round2"


@pytest.mark.skipif(not (ROUND2 / "runs.jsonl").exists(), reason="no committed round two")
def test_committed_round_two_verdicts_are_regenerated_from_its_runs():
    """figures/bridge/round2/results.json read back: every committed cell's verdict, depth and controls are
    what the pre-registered criterion gives on runs.jsonl; every cell with treatment runs has a prediction
    in predictions.json; V3's gate (all seeds failing) is in gate.json."""
    import json
    import sys

    sys.path.insert(0, str(ROUND2.parents[2] / "experiments"))
    import bridge_round2 as R

    from cpi_theory.bridge import get_design

    runs = R.read_runs(ROUND2 / "runs.jsonl")
    results = json.loads((ROUND2 / "results.json").read_text())["cells"]
    predictions = json.loads((ROUND2 / "predictions.json").read_text())
    for name in ("V1", "V2", "V3"):
        for cell in get_design(name, "tiny").cells:
            key = f"{name} / {cell.name}"
            judged = R.judge_cell(runs, name, cell)
            committed = results[key]
            assert set(judged["arms"]) == set(committed["arms"]), key
            for arm, a in judged["arms"].items():
                c = committed["arms"][arm]
                assert a["inversion"] == c["inversion"] and a["failed"] == c["failed"], (key, arm)
                assert a["treatment"]["depth"] == pytest.approx(c["treatment"]["depth"], abs=1e-12)
                assert key in predictions, key
            for control, c in judged["controls"].items():
                assert c["depth"] == pytest.approx(committed["controls"][control]["depth"], abs=1e-12)
    gate = json.loads((ROUND2 / "gate.json").read_text())
    assert sum(r["gate"]["passed"] for r in gate["V2/h4"]) == 5
    # every design's finetuned seeds are exactly its gated ones, at most 5 per model
    for key, records in gate.items():
        name, variant = key.split("/")
        passed = {r["seed"] for r in records if r["gate"]["passed"]}
        assert len(passed) <= 5, key
        cells = [c.name for c in get_design(name, "tiny").cells if c.model == variant]
        seeds = {r["seed"] for r in runs if r["design"] == name and r["cell"] in cells}
        assert seeds == passed, key
    # V3's pre-registered pretraining failed the gate at all 12 seeds (kept in the calibration record); the
    # calibrated regime's gate is gate.json's
    calibration = R.read_runs(ROUND2 / "v3_calibration" / "calibration.jsonl")
    preregistered = [r for r in calibration if r["candidate"] == "preregistered"]
    assert len(preregistered) == 12 and not any(r["gate"]["passed"] for r in preregistered)
    # the docs' small-size check: V3's calibrated regime, seed 0, fails the gate at M_C(0) 0.847
    (small,) = R.read_runs(ROUND2 / "v3_calibration" / "small" / "calibration.jsonl")
    assert small["candidate"] == "agree0.05_factnoise0.1_copynoise0.85" and small["seed"] == 0
    assert not small["gate"]["passed"] and round(small["gate"]["context_reliance"], 3) == 0.847
