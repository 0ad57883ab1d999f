"""``cpi-theory advise`` and :func:`cpi_theory.advise.advise`: the smallest dose of each mitigation, checked
by re-simulating it from a configuration built independently of the advisor; the CLI's JSON contract, its
refusals (one line, exit 2, naming the flag) and ``--from-fit`` on the committed joint-fit example."""

import ast
import json
import pathlib

import numpy as np
import pytest
from _doc_examples import documented_examples, printed

from cpi_theory import Config, ToyParams
from cpi_theory.advise import MITIGATIONS, advise, fit_inputs
from cpi_theory.advise._inputs import FIT_POINTS, check_advice_inputs
from cpi_theory.advise._search import LR_V_DOSES_PER_DECADE, _search, dose_grid
from cpi_theory.cli._advise import _inputs, _summary
from cpi_theory.cli._main import build_parser, main
from cpi_theory.reduced import Regime, minimal_train

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = ROOT / "figures" / "bridge" / "joint_example" / "report.json"
PAPER = dict(delta_m=0.6, delta_c=0.2, cs_fraction=0.5, horizon=300, target=0.7)
REGIMES = {
    "filter_cs": Regime(value_trained=False, has_s=False, has_aug=False),
    "augment": Regime(value_trained=False, has_s=False, has_aug=True),
    "lr_v_ratio": Regime(value_trained=True, has_s=False, has_aug=False),
    "add_s": Regime(value_trained=False, has_s=True, has_aug=False),
}


@pytest.fixture(scope="module")
def paper_advice():
    return advise(**PAPER)


def _mc_at_horizon(name: str, dose: float) -> float:
    """M_C(300) of the paper's mixture (10 C + 10 C+S) with the mitigation at ``dose``, from a Config."""
    counts = {"n_context_critical": 10.0, "n_non_context_critical": 10.0}
    lr_v = 0.0
    if name == "filter_cs":
        counts["n_non_context_critical"] = 10.0 * (1 - dose)
    elif name == "augment":
        counts["n_non_context_critical"] = 10.0 * (1 - dose)
        counts["n_counterfactual_augmented"] = 10.0 * dose
    elif name == "lr_v_ratio":
        lr_v = dose
    else:
        counts = {"n_context_critical": 10.0 * (1 - dose), "n_non_context_critical": 10.0 * (1 - dose)}
        counts["n_subject_only"] = 20.0 * dose
    params = ToyParams.from_config(Config(**counts, lr_v=lr_v)).map(np.float64)
    # The regime the advisor uses for this mitigation (its compiled program is reused: the check is the
    # configuration, built here from a Config rather than by the advisor's dose map).
    out = minimal_train(params, steps=300, regime=REGIMES[name], compile_per_steps=False)
    return float(out.records["context_reliance"][-1])


def test_paper_default_inverts_and_each_dose_is_the_smallest_that_meets_the_target(paper_advice):
    a = paper_advice
    assert a.shape == "rise-then-fall"
    assert a.start == pytest.approx(0.2899, abs=1e-4) and a.peak > 0.85 and 20 < a.peak_step < 60
    assert a.at_horizon == pytest.approx(0.5826, abs=1e-4) and not a.target_met
    assert a.limit["closed_form"] and a.limit["kind"] == "plateau" and a.limit["value"] < a.at_horizon
    assert a.memory["measure"] == "memory_recall"
    assert [m.name for m in a.mitigations] == list(MITIGATIONS)
    for name in ("filter_cs", "augment", "lr_v_ratio"):
        m = a.mitigation(name)
        assert m.status == "met" and m.met and m.checked_by_simulation, m
        assert abs(m.at_horizon - PAPER["target"]) < 1e-6
        # The re-simulation (independent configuration and compiled program) meets the target ...
        assert _mc_at_horizon(name, m.dose) >= PAPER["target"] - 1e-6
        # ... and no smaller dose does: just below it, and anywhere from the base up.
        assert _mc_at_horizon(name, m.dose - 1e-4) < PAPER["target"]
        for dose in np.linspace(0.0, m.dose, 6)[:-1]:
            assert _mc_at_horizon(name, float(dose)) < PAPER["target"], (name, dose)
    # W_V frozen: the closed-book recall of a held-out fact does not move, so filtering costs no memory.
    assert abs(a.mitigation("filter_cs").memory_cost) < 1e-9
    add_s = a.mitigation("add_s")
    assert add_s.status == "not reachable" and add_s.dose is None and not add_s.met
    assert add_s.at_horizon < PAPER["target"] and add_s.best_dose is not None


def test_json_has_the_contract_keys_and_the_same_answer(paper_advice, capsys):
    argv = ["advise", "--delta-m", "0.6", "--delta-c", "0.2", "--cs-fraction", "0.5"]
    assert main([*argv, "--horizon", "300", "--target", "0.7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"shape", "peak", "peak_step", "at_horizon", "limit", "mitigations"} <= set(out)
    assert {"value", "kind", "closed_form", "reason"} <= set(out["limit"])
    assert out["shape"] == "rise-then-fall" and out["at_horizon"] == paper_advice.at_horizon
    for entry, m in zip(out["mitigations"], paper_advice.mitigations, strict=True):
        assert {"name", "dose", "at_horizon", "memory_cost", "met", "checked_by_simulation"} <= set(entry)
        assert entry["name"] == m.name and entry["dose"] == m.dose


def _report(tmp_path, text: str) -> str:
    path = tmp_path / "report.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--delta-m", "1.2"], "--delta-m"),
        (["--delta-c", "0.35"], "--delta-m"),  # 2 delta_C < delta_M: Config names delta_m
        (["--delta-m", "abc"], "--delta-m"),
        (["--cs-fraction", "1.5"], "--cs-fraction"),
        (["--s-fraction", "0.6"], "--s-fraction"),  # 0.5 + 0.6 > 1
        (["--horizon", "0"], "--horizon"),
        (["--horizon", "2.5"], "--horizon"),
        (["--horizon", "1e8"], "--horizon"),
        (["--target", "1"], "--target"),
        (["--target", None], "--target"),
        (["--n-points", "-3"], "--n-points"),
        (["--lr-v-ratio", "-0.1"], "--lr-v-ratio"),
        (["--start-mc", "0.999"], "--start-mc"),
        (["--from-fit", "missing.json"], "--from-fit"),
        (["--from-fit", "BROKEN"], "--from-fit"),
        (["--from-fit", "NOFIT"], "--from-fit"),
    ],
)
def test_refusals_exit_2_on_one_line_naming_the_flag(extra, flag, tmp_path, capsys):
    args = {
        "--delta-m": "0.6",
        "--delta-c": "0.2",
        "--cs-fraction": "0.5",
        "--horizon": "300",
        "--target": "0.7",
    }
    key, value = extra
    if value == "BROKEN":
        value = _report(tmp_path, "{not json")
    elif value == "NOFIT":
        value = _report(tmp_path, '{"best_fit": {"parameters": {"delta_m": {"value": 0.6}}}}')
    elif value == "missing.json":
        value = str(tmp_path / "missing.json")
    if value is None:
        del args[key]
    else:
        args[key] = value
    argv = ["advise"] + [x for pair in args.items() for x in pair]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"cpi-theory advise: error: {flag}: "), err


def test_fit_inputs_read_the_joint_fit_best_parameters():
    fit = fit_inputs(REPORT)
    best = json.loads(REPORT.read_text())["best_fit"]
    for name in (
        "delta_m",
        "delta_c",
        "cs_fraction",
        "s_fraction",
        "context_bias",
        "lr_v_ratio",
        "time_scale",
    ):
        assert fit[name] == best["parameters"][name]["value"]
    assert fit["horizon"] == round(fit["time_scale"] * (best["step"][-1] - best["step"][0]))
    # The fit's fractions are shares of the fit's toy points (read from its source: no JAX import).
    tree = ast.parse((ROOT / "cpi_theory" / "fit" / "_fit.py").read_text())
    points = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "TOY_POINTS"
    ]
    assert points == [FIT_POINTS]


def test_from_fit_flags_override_the_report():
    args = build_parser().parse_args(
        ["advise", "--from-fit", str(REPORT), "--target", "0.8", "--horizon", "150"]
    )
    inputs = _inputs(args)
    fit = fit_inputs(REPORT)
    assert inputs["horizon"] == 150 != fit["horizon"] and inputs["target"] == 0.8
    assert inputs["delta_m"] == fit["delta_m"] and inputs["context_bias"] == fit["context_bias"]
    args = build_parser().parse_args(
        ["advise", "--from-fit", str(REPORT), "--target", "0.8", "--start-mc", "0.5"]
    )
    assert "context_bias" not in _inputs(args)  # --start-mc replaces the report's start


# The documented `$ cpi-theory advise ...` examples (README.md, docs/advise.md): the paper default's from
# this module's fixture (the command's inputs checked to be the fixture's), the --from-fit one run here.
ADVISE_EXAMPLES = [e for e in documented_examples(ROOT) if e.argv[0] == "advise"]


def test_documented_paper_default_examples_print_what_the_docs_show(paper_advice):
    examples = [e for e in ADVISE_EXAMPLES if "--from-fit" not in e.argv]
    assert len(examples) >= 2  # README.md and docs/advise.md
    for example in examples:
        inputs = _inputs(build_parser().parse_args(list(example.argv)))
        assert inputs == {k: float(v) if k != "horizon" else v for k, v in PAPER.items()}, example.id
        assert _summary(paper_advice) == example.shown, example.id


def test_documented_from_fit_example_prints_what_the_docs_show(capsys, monkeypatch):
    (example,) = [e for e in ADVISE_EXAMPLES if "--from-fit" in e.argv]
    monkeypatch.chdir(ROOT)
    assert main(list(example.argv)) == 0
    captured = capsys.readouterr()
    assert printed(captured.out, captured.err) == example.shown
    fit = fit_inputs(REPORT)
    assert (
        f"delta_M {fit['delta_m']:.4g}" in example.shown
        and f"context_bias {fit['context_bias']:.4g}" in example.shown
    )


def test_lr_v_dose_grid_adapts_to_a_large_base_ratio(paper_advice):
    """A base lr_v / lr_kq of 1e6 still finds the paper's crossing (0.1438): the grid keeps its resolution
    on [0, 1] and extends geometrically beyond (a linear grid to 1e6 would start with the cell [0, 25000])."""
    grid = dose_grid("lr_v_ratio", 0.0, 1e6, 11)
    assert np.allclose(grid[:11], np.linspace(0, 1, 11)) and grid[-1] == pytest.approx(1e6)
    assert np.all(np.diff(grid) > 0) and np.all(
        grid[12:] / grid[11:-1] <= 10 ** (1 / LR_V_DOSES_PER_DECADE) + 1e-9
    )
    assert np.array_equal(dose_grid("filter_cs", 0.0, 1.0, 41), np.linspace(0, 1, 41))
    # The lr_v_ratio search alone (the advisor runs it as below, after the base run), at a base ratio of 1e6.
    given = check_advice_inputs(**PAPER, lr_v_ratio=1e6)
    base = ToyParams.from_config(given.config)
    regime = Regime(value_trained=True, has_s=False, has_aug=False)
    large = _search("lr_v_ratio", base, regime, 300, PAPER["target"], 0.0, 20.0, None, 11)
    expected = paper_advice.mitigation("lr_v_ratio").dose
    assert large.status == "met" and large.dose == pytest.approx(expected, abs=1e-9)
    assert large.dose_range == (0.0, 1e6) and "below the base's own value" in large.note
