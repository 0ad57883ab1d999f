"""The engine interface's shared pieces: the one summary, the one divergence check, the one loop."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpi_theory as ct
from cpi_theory.engine import SHAPES, Engine, classify_shape, recorded_steps, run_recorded, summarize
from cpi_theory.engine._divergence import first_bad_step, raise_if_diverged


def test_summary_of_one_curve_and_of_a_batch():
    curve = np.array([0.3, 0.9, 0.7, 0.6])
    s = summarize(np.arange(4), curve)
    assert (s.start, s.peak, s.peak_step, s.final, s.final_step) == (0.3, 0.9, 1, 0.6, 3)
    assert s.depth == pytest.approx(0.3)
    assert s.shape == "rise-then-fall" and s.inversion
    batch = summarize(np.arange(4), np.stack([curve, np.sort(curve)]))
    np.testing.assert_allclose(batch.depth, [0.3, 0.0])
    assert list(batch.shape) == ["rise-then-fall", "monotone rise"]
    assert list(batch.inversion) == [True, False]
    np.testing.assert_array_equal(batch.peak_step, [1, 3])


@pytest.mark.parametrize(
    "curve, shape",
    [
        ([0.5, 0.6, 0.55], SHAPES[0]),
        ([0.5, 0.4, 0.45], SHAPES[1]),
        ([0.5, 0.6, 0.7], SHAPES[2]),
        ([0.5, 0.45, 0.4], SHAPES[3]),
        ([0.5, 0.51, 0.5], SHAPES[4]),
        ([0.5, 0.7, 0.3, 0.6], SHAPES[0]),  # both excursions: the peak comes first
        ([0.5, 0.3, 0.7, 0.4], SHAPES[1]),  # both: the trough comes first
    ],
)
def test_shape_classes(curve, shape):
    assert classify_shape(curve) == shape
    assert summarize(np.arange(len(curve)), curve).shape == shape


def test_summary_refuses_mismatched_steps():
    with pytest.raises(ValueError, match="step"):
        summarize(np.arange(3), [0.1, 0.2])


def test_first_bad_step_prefers_the_loop_counter_then_the_records():
    step = np.array([0, 5, 10])
    loss = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, np.inf], [1.0, 1.0, 1.0]])
    mc = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, np.nan, 0.5]])
    bad = first_bad_step(np.array([-1, -1, 7]), step, loss, mc)
    np.testing.assert_array_equal(bad, [-1, 10, 7])
    with pytest.raises(ct.DivergenceError, match=r"at step 10 \(run 1 of the batch"):
        raise_if_diverged(bad)
    raise_if_diverged(np.int32(-1))  # finite: nothing raised


def _counting_engine():
    # x <- x + 1 with loss x: records x at the recorded steps; the final state adds one more record.
    return Engine(
        name="count",
        init=lambda inputs: inputs,
        step=lambda x, inputs: (x + 1.0, x, {"loss": x}),
        observe=lambda x, inputs: {"context_reliance": x},
        finish=lambda x, inputs: (x, {"context_reliance": x, "loss": x}),
        magnitude=lambda x, inputs: x,
    )


@pytest.mark.parametrize("steps, every", [(0, 1), (7, 1), (7, 3), (6, 3), (2, 5)])
def test_the_loop_records_at_the_recorded_steps(steps, every):
    out = jax.jit(lambda x0: run_recorded(_counting_engine(), x0, steps=steps, record_every=every))(
        jnp.asarray(0.0)
    )
    expected = recorded_steps(steps, every).astype(np.float64)
    np.testing.assert_array_equal(out.records["context_reliance"], expected)
    np.testing.assert_array_equal(out.records["loss"], expected)
    assert float(out.final_state) == steps and int(out.first_nonfinite_step) == -1
    assert int(out.first_imprecise_step) == -1  # magnitudes up to 7: far below the limit


def test_the_loop_notes_the_first_recorded_step_float64_cannot_resolve():
    # magnitude = x grows by 1e6 per step: eps * x passes 1e-9 once x > 4.5e6, at step 5 (x = 5e6).
    engine = dataclasses.replace(_counting_engine(), step=lambda x, inputs: (x + 1e6, x, {"loss": x}))
    out = run_recorded(engine, jnp.asarray(0.0), steps=9, record_every=1)
    assert int(out.first_imprecise_step) == 5 and float(out.imprecise_magnitude) == 5e6
    coarse = run_recorded(engine, jnp.asarray(0.0), steps=9, record_every=3)
    assert int(coarse.first_imprecise_step) == 6  # checked at the recorded steps 0, 3, 6, 9


def test_the_loop_counts_the_first_non_finite_loss():
    engine = Engine(
        name="blowup",
        init=lambda inputs: inputs,
        step=lambda x, inputs: (x * 1e200, x, {}),
        observe=lambda x, inputs: {"loss": x},
        finish=lambda x, inputs: (x, {"loss": x}),
        magnitude=lambda x, inputs: jnp.zeros(()),
    )
    out = run_recorded(engine, jnp.asarray(1.0), steps=5)
    assert int(out.first_nonfinite_step) == 2  # 1, 1e200, inf
