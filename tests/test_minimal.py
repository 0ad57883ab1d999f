"""The minimal exact reduced engine (cpi_theory.reduced._minimal): per regime, only the coordinates that move.

Checked against the d x d model (through ``simulate``), against the general 166-coordinate reduced engine
(``general_train``, also at real class sizes), against itself run in a covering regime, and for its online
summaries, masked padding (one compilation per power of two of steps), learning-rate schedules and the
committed generated code.

Compilations dominate the cost (tens of seconds for a regime with W_V trained), so every test runs
``STEPS`` steps recorded every step wherever it can: ``minimal_train(..., compile_per_steps=False)`` and
``simulate(engine="reduced")`` then share one compiled program per regime (the masked scan of length
``_capacity(STEPS)``).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as cpi
from cpi_theory.reduced import (
    GENERAL,
    REGIMES,
    Regime,
    _minimal,
    minimal_initial_state,
    minimal_state_names,
    minimal_summary,
    minimal_train,
    minimal_velocity,
    regime_of,
    symbol_values,
)
from cpi_theory.reduced._compiled import _BASE, _compiled

TOL = 1e-10  # against the full d x d model (as tests/test_reduced.py)
TOL_REDUCED = 1e-12  # between the reduced engines (same sympy model)
STEPS = 150  # one masked program of length 256 per regime serves every run below at record_every 1
PROBE = (
    "context_reliance",
    "attention_context",
    "attention_subject",
    "counterfactual_accuracy",
    "parametric_accuracy",
    "loss",
)
FROZEN = Regime(False, False, False)
FROZEN_S_AUG = Regime(False, True, True)
VALUE = Regime(True, False, False)
COUNT_KEYS = ("n_context_critical", "n_non_context_critical", "n_subject_only", "n_counterfactual_augmented")
SEED = 20240611


def assert_same_trajectory(a, b, tol=TOL):
    np.testing.assert_array_equal(a.step, b.step)
    for key in PROBE:
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=0, atol=tol, err_msg=key)
    assert a.per_class.keys() == b.per_class.keys()
    for cls in a.per_class:
        assert a.per_class[cls].keys() == b.per_class[cls].keys()
        for m in a.per_class[cls]:
            np.testing.assert_allclose(
                a.per_class[cls][m], b.per_class[cls][m], rtol=0, atol=tol, err_msg=f"{cls}/{m}"
            )


def assert_same_records(a: dict, b: dict, tol=TOL_REDUCED, skip=("state",)):
    """Records of two reduced runs (keys of the full engine; per_class (R, 4) arrays, NaN where empty)."""
    assert set(a) - set(skip) == set(b) - set(skip)
    for key in sorted(set(a) - set(skip)):
        if key == "per_class":
            assert a[key].keys() == b[key].keys()
            for m in a[key]:
                np.testing.assert_allclose(
                    np.asarray(a[key][m]), np.asarray(b[key][m]), rtol=0, atol=tol, err_msg=f"per_class/{m}"
                )
        else:
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=0, atol=tol, err_msg=key)


def train(params, regime=None, steps=STEPS):
    """The shared masked program (what ``simulate(engine="reduced")`` runs)."""
    return minimal_train(params, steps=steps, regime=regime, compile_per_steps=False)


# -- 1. hidden-config style: random configurations, minimal engine == full model ---------------------------
# Two vocabulary / training-set shapes (the full engine compiles once per shape) and three regimes (the
# minimal engine compiles once per regime). Per config: the regime, the shape, and class sizes pinned to 0
# or 1; the other sizes, the learning rates, delta_c / delta_m, o_c / o_r and the relation score are drawn.
SHAPES = {
    "A": dict(n_answers=50, n_subjects=40, points=20),
    "B": dict(n_answers=37, n_subjects=29, points=13),
}
SPECS = {
    FROZEN: [("A", {"n_context_critical": 0}), ("B", {"n_non_context_critical": 1})],
    FROZEN_S_AUG: [("A", {"n_counterfactual_augmented": 1}), ("B", {"n_context_critical": 1})],
    GENERAL: [
        ("A", {"n_subject_only": 1}),
        ("B", {"n_non_context_critical": 0, "n_context_critical": 1}),
        ("A", {}),
    ],
}


def _draw_config(rng: np.random.Generator, regime: Regime, shape: str, pinned: dict) -> cpi.Config:
    present = {
        "n_context_critical": True,
        "n_non_context_critical": True,
        "n_subject_only": regime.has_s,
        "n_counterfactual_augmented": regime.has_aug,
    }
    counts = {k: (pinned[k] if k in pinned else 0) for k in COUNT_KEYS}
    free = [k for k in COUNT_KEYS if present[k] and k not in pinned]
    spare = SHAPES[shape]["points"] - sum(counts.values()) - len(free)
    for k, extra in zip(free, rng.multinomial(spare, np.full(len(free), 1 / len(free))), strict=True):
        counts[k] = 1 + int(extra)
    delta_c = float(rng.uniform(0.05, 0.3))
    return cpi.Config(
        n_answers=SHAPES[shape]["n_answers"],
        n_subjects=SHAPES[shape]["n_subjects"],
        **counts,
        delta_c=delta_c,
        delta_m=float(rng.uniform(2 * delta_c + 0.05, 0.95)),
        o_c=float(rng.uniform(-1.0, 1.0)),
        o_r=float(rng.uniform(-1.0, 1.0)),
        relation_score=float(rng.uniform(-30.0, -3.0)),
        lr_kq=float(rng.uniform(0.3, 2.0)),
        lr_v=float(rng.uniform(0.05, 0.5)) if regime.value_trained else 0.0,
        steps=STEPS,
        record_every=1,
    )


def _random_configs() -> dict[Regime, list[cpi.Config]]:
    rng = np.random.default_rng(SEED)
    return {
        regime: [_draw_config(rng, regime, shape, pinned) for shape, pinned in specs]
        for regime, specs in SPECS.items()
    }


RANDOM_CONFIGS = _random_configs()


def test_random_configs_cover_the_cases():
    """The drawn configurations cover what the comparison with the full model is meant to cover."""
    configs = [c for group in RANDOM_CONFIGS.values() for c in group]
    counts = np.array([c.class_counts() for c in configs])
    assert any(c.lr_v == 0 for c in configs) and any(c.lr_v > 0 for c in configs)
    assert (counts[:, 2] > 0).any() and (counts[:, 3] > 0).any()  # S and augmented points
    assert (counts == 0).any() and (counts == 1).any()  # empty and single-point classes
    assert any(c[0] != c[1] for c in counts)  # unequal C / C+S
    assert all(c.o_c != 0 and c.o_r != 0 for c in configs)
    assert len({(c.n_answers, c.n_subjects) for c in configs}) > 1
    for regime, group in RANDOM_CONFIGS.items():
        assert all(regime_of(cpi.reduced_params(c)) == regime for c in group)


@pytest.mark.parametrize("regime", list(SPECS), ids=lambda r: r.name)
def test_reduced_matches_full_on_random_configs(regime):
    for cfg in RANDOM_CONFIGS[regime]:
        reduced = cpi.simulate(cfg, engine="reduced")
        full = cpi.simulate(cfg, engine="full")
        assert reduced.engine == "reduced"
        try:
            assert_same_trajectory(reduced, full)
        except AssertionError as error:
            raise AssertionError(f"config {cfg}") from error
        # the final state is the general 166-coordinate state
        assert np.shape(reduced.final_state) == (len(cpi.reduced_state_names()),)


# -- 2. real class sizes ------------------------------------------------------------------------------------
def _params(cfg: cpi.Config, **sizes) -> cpi.ToyParams:
    """The configuration's parameters with some class sizes (by DataClass key) set to real numbers."""
    params = cpi.reduced_params(cfg)
    return params.with_class_sizes(**{k: jnp.asarray(v, dtype=jnp.float64) for k, v in sizes.items()})


def test_real_class_sizes_match_general_engine_and_are_continuous():
    cfg = cpi.Config(
        n_context_critical=6,
        n_non_context_critical=3,
        n_subject_only=2,
        n_counterfactual_augmented=1,
        lr_kq=1.3,
        lr_v=0.3,
        o_c=0.2,
        o_r=-0.4,
    )
    runs = {}
    for n_cs in (3.0, 3.5, 4.0):
        params = _params(cfg, non_context_critical=n_cs)
        assert regime_of(params) == GENERAL
        minimal = train(params)
        general = cpi.reduced.general_train(params, steps=STEPS, record_every=1)
        # at integer sizes the general engine is the full model; at 3.5 both are its analytic continuation
        assert_same_records(minimal.records, general.records)
        # Coordinates of empty orbits (here the "other augmented point" of the single augmented point)
        # cover no matrix entry and influence nothing: the general engine leaves them at 0, the minimal
        # one follows their limit as the orbit empties. Every other coordinate agrees.
        orbit = np.asarray(_compiled().orbit_fn(*[symbol_values(params)[k] for k in _BASE]))
        np.testing.assert_allclose(
            np.asarray(_minimal.to_general(minimal.final_state.x, GENERAL))[orbit != 0],
            np.asarray(general.final_state)[orbit != 0],
            rtol=0,
            atol=TOL_REDUCED,
        )
        runs[n_cs] = minimal.records
    # continuous: a size 1e-7 away moves the curve by O(1e-7)
    h = 1e-7
    for sign in (-1.0, 1.0):
        near = train(_params(cfg, non_context_critical=3.5 + sign * h)).records
        for key in ("context_reliance", "attention_context", "loss"):
            gap = np.max(np.abs(np.asarray(near[key]) - np.asarray(runs[3.5][key])))
            assert 0 < gap < 1e-5, (key, gap)
    # between the neighbours: a C+S point more pulls reliance down at every step after the first
    mc = {k: np.asarray(v["context_reliance"]) for k, v in runs.items()}
    assert np.all(mc[4.0][2:] < mc[3.5][2:]) and np.all(mc[3.5][2:] < mc[3.0][2:])


def test_covering_regime_gives_the_same_trajectory():
    """A frozen-W_V configuration without S / augmented points (and a real class size) run in GENERAL:
    the same records and the same moving coordinates; W_V stays exactly pretrained. (The q coordinates of
    the empty S / augmented classes are a phantom point's: the per-entry gradient of an orbit does not
    vanish with its size, but they enter nothing with weight n_S = n_AUG = 0.)"""
    params = _params(cpi.Config(lr_kq=0.9, o_c=0.3), non_context_critical=3.5, context_critical=7.0)
    smallest = regime_of(params)
    assert smallest == FROZEN
    small = train(params)
    general = train(params, regime=GENERAL)
    assert_same_records(small.records, general.records)
    names = minimal_state_names(GENERAL)
    by_name = dict(zip(names, general.records["state"], strict=True))
    for name, x in zip(minimal_state_names(smallest), small.records["state"], strict=True):
        np.testing.assert_allclose(np.asarray(by_name.pop(name)), np.asarray(x), rtol=0, atol=TOL_REDUCED)
    phantom = {name for name in by_name if not name.startswith("w_")}
    assert phantom == {"kappa_S_s", "kappa_AUG_c", "kappa_AUG_s"}
    for name, x in by_name.items():
        if name not in phantom:
            assert np.all(np.asarray(x) == 0), name


# -- 3. online summaries -----------------------------------------------------------------------------------
SUMMARY_CASES = {
    "inversion": dict(),  # rises to a peak near step 50, then falls
    "slow": dict(lr_kq=0.05),  # still rising at the end: the peak is the last recorded step
    "falling": dict(n_context_critical=1, n_non_context_critical=12, o_c=0.4),
}


@pytest.mark.parametrize("record_every", [1, 7])
def test_online_summary_equals_summary_of_recorded_curve(record_every):
    recorded = cpi.recorded_steps(STEPS, record_every)
    peaks = {}
    for name, overrides in SUMMARY_CASES.items():
        params = cpi.reduced_params(cpi.Config(**overrides))
        regime = regime_of(params)
        out = train(params)
        mc = np.asarray(out.records["context_reliance"])[recorded]
        expected = cpi.summarize(recorded, mc)
        got = minimal_summary(params, steps=STEPS, record_every=record_every, regime=regime).records
        msg = f"{name}, record_every={record_every}"
        for key in ("start", "peak", "final"):
            np.testing.assert_allclose(
                np.asarray(got[key]),
                getattr(expected, key),
                rtol=0,
                atol=TOL_REDUCED,
                err_msg=f"{msg}: {key}",
            )
        assert int(got["peak_step"]) == expected.peak_step, msg
        peaks[name] = expected.peak_step
        np.testing.assert_allclose(
            np.asarray(got["final_loss"]), np.asarray(out.records["loss"])[-1], rtol=0, atol=TOL_REDUCED
        )
        assert int(got["first_nonfinite_reliance"]) == -1, msg
    # the cases do exercise an interior peak, a peak at the (off-grid) last step and a peak at the start
    assert 0 < peaks["inversion"] < STEPS and peaks["slow"] == STEPS and peaks["falling"] == 0, peaks


# -- 4. masked padding: one compilation per power of two of steps -------------------------------------------
def test_masked_padding_is_bit_identical_and_compiles_once_per_power_of_two():
    params = cpi.reduced_params(cpi.Config(lr_kq=1.2, n_non_context_critical=7))
    exact = minimal_train(params, steps=STEPS)
    padded = train(params)
    leaves_exact, tree_exact = jax.tree.flatten(exact.records)
    leaves_padded, tree_padded = jax.tree.flatten(padded.records)
    assert tree_exact == tree_padded
    for a, b in zip(leaves_exact, leaves_padded, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(exact.final_state.x, padded.final_state.x, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(exact.final_state.t) == int(padded.final_state.t) == STEPS
    assert int(exact.first_nonfinite_step) == int(padded.first_nonfinite_step) == -1
    assert int(exact.first_imprecise_step) == int(padded.first_imprecise_step)

    # other steps within the same power of two: no new program, and the same prefix bit for bit
    size = _minimal._train._cache_size()
    for steps in (129, 256):
        other = train(params, steps=steps)
        assert _minimal._train._cache_size() == size, steps
        assert np.shape(other.records["context_reliance"]) == (steps + 1,)
        assert int(other.final_state.t) == steps
        keep = min(steps, STEPS) + 1
        np.testing.assert_array_equal(
            np.asarray(other.records["context_reliance"])[:keep],
            np.asarray(exact.records["context_reliance"])[:keep],
        )
        np.testing.assert_array_equal(
            np.asarray(other.final_state.x[0]), np.asarray(other.records["state"][0])[-1]
        )

    # simulate: 300 steps, then 400 (both in the program of length 512) compile at most once more
    cfg = cpi.Config(lr_kq=1.2, n_non_context_critical=7, steps=300)
    size = _minimal._train._cache_size()
    short = cpi.simulate(cfg, engine="reduced")
    long = cpi.simulate(cfg.replace(steps=400), engine="reduced")
    assert 1 <= _minimal._train._cache_size() <= size + 1
    np.testing.assert_array_equal(long.context_reliance[:301], short.context_reliance)
    np.testing.assert_array_equal(short.step, np.arange(301))


# -- 5. learning-rate schedules ----------------------------------------------------------------------------
def test_lr_scale_constant_and_schedule():
    cfg = cpi.Config(lr_kq=0.8, lr_v=0.3, n_non_context_critical=6)
    params = cpi.reduced_params(cfg)
    assert regime_of(params) == VALUE
    c = 0.3
    constant = minimal_train(params, steps=STEPS, lr_scale=jnp.full((STEPS,), c))
    scaled = params.replace(lr_kq=params.lr_kq * c, lr_v=params.lr_v * c)
    rescaled = minimal_train(scaled, steps=STEPS, lr_scale=jnp.ones((STEPS,)))  # same program
    assert_same_records(constant.records, rescaled.records, skip=())
    # and lr_scale = 1 is no schedule at all (the run without one, here through the covering regime)
    assert_same_records(rescaled.records, train(scaled, regime=GENERAL).records)
    # the factor does act (a real difference from the unscaled run)
    assert (
        np.max(
            np.abs(
                np.asarray(constant.records["context_reliance"])
                - np.asarray(train(params, regime=GENERAL).records["context_reliance"])
            )
        )
        > 1e-2
    )

    # a linear warmup equals stepping by hand with the per-step rates
    warmup = np.minimum(1.0, (np.arange(STEPS) + 1.0) / 40.0)
    scheduled = minimal_train(params, steps=STEPS, lr_scale=jnp.asarray(warmup))
    velocity = jax.jit(minimal_velocity(VALUE))
    x = minimal_initial_state(params, VALUE)
    states, losses = [x], []
    for factor in warmup:
        v, loss = velocity(x, params)
        x = tuple(xi + factor * vi for xi, vi in zip(x, v, strict=True))
        states.append(x)
        losses.append(loss)
    by_hand = np.asarray([[float(xi) for xi in s] for s in states])  # (steps + 1, n)
    recorded = np.stack([np.asarray(xi) for xi in scheduled.records["state"]], axis=-1)
    assert recorded.shape == by_hand.shape
    np.testing.assert_allclose(recorded, by_hand, rtol=1e-12, atol=1e-12)
    # the loss the velocity reports is the recorded training loss (before each step)
    np.testing.assert_allclose(
        np.asarray(losses), np.asarray(scheduled.records["loss"])[:-1], rtol=0, atol=TOL_REDUCED
    )
    with pytest.raises(ValueError, match="lr_scale"):
        minimal_train(params, steps=STEPS, lr_scale=jnp.ones((STEPS - 1,)))


# -- 6. regimes and their states ---------------------------------------------------------------------------
def test_regime_states_are_subsets_of_the_general_state():
    general_names = cpi.reduced_state_names()
    assert len(REGIMES) == 8 and len(set(REGIMES)) == 8
    for regime in REGIMES:
        names = minimal_state_names(regime)
        assert len(set(names)) == len(names)
        assert set(names) <= set(general_names), regime
        index = _minimal.general_index(regime)
        assert [general_names[i] for i in index] == list(names)
        for other in REGIMES:  # a covering regime moves every coordinate the covered one moves
            if other.covers(regime):
                assert set(names) <= set(minimal_state_names(other)), (regime, other)
    assert set(minimal_state_names(GENERAL)) == set(general_names)  # every coordinate moves somewhere
    sizes = {r: len(minimal_state_names(r)) for r in REGIMES}
    assert sizes[FROZEN] == min(sizes.values()) and sizes[GENERAL] == max(sizes.values())
    # W_V frozen: only q moves
    assert all(n.startswith("kappa") for n in minimal_state_names(FROZEN_S_AUG))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, Regime(False, False, False)),
        ({"lr_v": 0.1}, Regime(True, False, False)),
        ({"n_subject_only": 2}, Regime(False, True, False)),
        ({"n_counterfactual_augmented": 0.5}, Regime(False, False, True)),
        ({"n_subject_only": 1, "n_counterfactual_augmented": 3, "lr_v": 1e-9}, GENERAL),
        ({"n_context_critical": 0}, Regime(False, False, False)),
    ],
)
def test_regime_of_picks_the_smallest_regime(overrides, expected):
    params = cpi.reduced_params(cpi.Config(**overrides))
    assert regime_of(params) == expected
    covering = [r for r in REGIMES if r.covers(expected)]
    assert min(covering, key=lambda r: len(minimal_state_names(r))) == expected


def test_regime_of_refuses_traced_parameters():
    params = cpi.reduced_params(cpi.Config())
    with pytest.raises(ValueError, match="regime"):
        jax.jit(lambda p: regime_of(p) and 0.0)(params)


# -- 7. the committed generated code is what the generator emits -------------------------------------------
@pytest.mark.slow
def test_generated_file_is_up_to_date(repo_root):
    from cpi_theory.reduced._codegen import GENERATED, generate

    text = generate()
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(GENERATED), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=repo_root,
    ).stdout
    committed = GENERATED.read_text()
    assert formatted == committed, (
        "_generated.py is stale: run python -m cpi_theory.reduced._codegen and ruff format"
    )


# -- 6. the restructured step (issue 21) against the general form, in every regime --------------------------
@pytest.mark.parametrize("regime", REGIMES, ids=lambda r: r.name)
def test_every_regime_agrees_with_the_general_form_to_1e13(regime):
    """The minimal engine (centered softmax backward, the summary's gap-based probe and its state check)
    and the unchanged general 166-coordinate form: M_C, the loss and the online summary within 1e-13."""
    cfg = cpi.Config(
        lr_v=0.2 if regime.value_trained else 0.0,
        n_subject_only=3 if regime.has_s else 0,
        n_counterfactual_augmented=2 if regime.has_aug else 0,
        o_c=0.3,
        o_r=-0.2,
        lr_kq=1.5,
    )
    params = cpi.reduced_params(cfg)
    assert regime_of(params) == regime
    mine = minimal_train(params, steps=STEPS).records
    general = cpi.reduced.general_train(params, steps=STEPS).records
    for key in ("context_reliance", "loss", "attention_context", "attention_subject"):
        np.testing.assert_allclose(mine[key], general[key], rtol=0, atol=1e-13, err_msg=key)
    summary = minimal_summary(params, steps=STEPS, regime=regime).records
    mc = np.asarray(general["context_reliance"])
    assert abs(float(summary["peak"]) - mc.max()) <= 1e-13 and int(summary["peak_step"]) == int(mc.argmax())
    assert abs(float(summary["final"]) - mc[-1]) <= 1e-13 and abs(float(summary["start"]) - mc[0]) <= 1e-13
    assert abs(float(summary["final_loss"]) - float(np.asarray(general["loss"])[-1])) <= 1e-13


# The value regimes' step is the same wrapper around a bigger generated update (it compiles in 20 s).
@pytest.mark.parametrize("value_trained", [False])
def test_the_summary_step_repeated_is_the_summaries_engine(value_trained):
    """``summary_step`` (what benchmarks/roofline.py costs) is the step the summaries loop repeats."""
    from cpi_theory.reduced import summary_step

    regime = Regime(value_trained, False, False)
    params = cpi.ToyParams.from_config(cpi.Config(lr_v=0.3 if value_trained else 0.0)).map(jnp.asarray)
    step, state = summary_step(regime, params)
    step = jax.jit(step)
    for _ in range(30):
        state = step(state, params)
    out = minimal_summary(params, steps=30, regime=regime, store_every=30)
    stepped = np.stack(state[0].x)
    np.testing.assert_allclose(
        stepped, np.stack([x[-1] for x in out.records["state"]]), rtol=1e-13, atol=1e-15
    )
    assert int(state[0].t) == 30 and np.any(stepped != np.stack([x[0] for x in out.records["state"]]))
