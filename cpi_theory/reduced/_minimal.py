"""The minimal exact reduced engine: per regime, only the coordinates that move, one fused update.

The state of a run is ``MinimalState(x, t)``: ``x`` (``(n,)`` for the ``n`` coordinates of the regime, in
``_generated.STATE_<regime>`` order) and the step counter ``t``. One step is ``x + lr_scale(t) * v(x)``
with ``v`` the generated velocity (:mod:`._codegen`), so the engine is elementwise over a batch axis and
differentiable (``jax.grad`` / ``jax.jacfwd``) in every parameter and in the initial state.

The regime is read from concrete parameter values (``regime_of``); under tracing (``jax.grad`` with respect
to ``lr_v`` or a class size, say) pass one explicitly: the regime must *cover* every parameter the
derivative is taken in (``GENERAL``, with every class and W_V trained, covers all), because a regime without
S points, say, has no coordinates through which ``n_S`` could act.

The loop records the raw state only; the metrics of the recorded states are computed afterwards, as one
vectorized pass (``observe`` then costs a copy, not a forward pass).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._precision import requires_float64
from ..config._params import ToyParams
from ..engine._interface import PRECISION_TOLERANCE, Engine
from ..engine._loop import Recorded, recorded_steps, run_recorded
from . import _generated
from ._codegen import Regime
from ._compiled import _compiled
from ._inputs import as_float64, check_params, symbol_values
from ._symbolic import CLASSES

# Steps per loop iteration of the summaries-only sweep loop, by value_trained. Not unrolled: with the step
# reduced to what the summary needs, unrolling 2-8 steps made a whole-batch CPU sweep 2x slower (XLA then
# splits the bigger body into fusions whose intermediates leave the cache: 100,000 runs x 1,000 steps,
# 2.8e7 config-steps/s at 1 vs 1.3e7-1.4e7 at 2, 8). Nor is minimal_train's: jax.jacfwd through an
# unrolled loop compiled 7x slower and ran 24x slower.
UNROLL = {False: 1, True: 1}
# Steps per loop iteration of ONE run's loop (scalars, every step recorded), by value_trained: there the loop's
# per-iteration cost dominates a step of a few hundred scalar operations, and 4 steps per iteration ran the
# frozen regime 1.55x faster (3,000 steps padded to 4,096: 3.0 vs 4.7 ms, best of 30, 2-core machine). The
# value regimes' bodies are 10-20x larger (compile time grows with the unroll): not unrolled.
SINGLE_RUN_UNROLL = {False: 4, True: 1}
# A minimal state: one array per moving coordinate (0-d for one run, (runs,) for a batch).
Coordinates = tuple[Float[Array, "*batch"], ...]
GENERAL = Regime(value_trained=True, has_s=True, has_aug=True)
SQRT_HALF = math.sqrt(0.5)


@dataclasses.dataclass(frozen=True)
class MinimalState:
    """One run's state: ``x`` the moving coordinates (a tuple of ``n`` scalars, :func:`state_names` order;
    a tuple rather than an ``(n,)`` array so that a batch of runs keeps each coordinate contiguous) and
    ``t`` the number of steps taken (int32)."""

    x: Coordinates
    t: jax.Array


jax.tree_util.register_dataclass(MinimalState, data_fields=["x", "t"], meta_fields=[])


def regime_of(params: ToyParams) -> Regime:
    """The smallest regime of one run or of columns of runs (the parameters must be concrete numbers)."""
    check_params(params)
    sizes = params.class_sizes
    try:
        flags = [
            bool(np.any(np.asarray(x) != 0))
            for x in (params.lr_v, sizes.subject_only, sizes.counterfactual_augmented)
        ]
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as error:
        raise ValueError(
            "regime: the parameters are traced; pass regime= (GENERAL covers every configuration)"
        ) from error
    return Regime(*flags)


def state_names(regime: Regime) -> tuple[str, ...]:
    """Names of the regime's moving coordinates (a subset of :func:`reduced_state_names`)."""
    return getattr(_generated, f"STATE_{regime.name}")


def general_index(regime: Regime) -> np.ndarray:
    """Positions of the regime's coordinates in the general 166-coordinate state."""
    return np.asarray(getattr(_generated, f"GENERAL_INDEX_{regime.name}"), dtype=np.int64)


def velocity_fn(regime: Regime):
    """``(x, params) -> (v, loss)``: ``x + v`` is one exact GD step; ``loss`` the training loss at ``x``."""
    return getattr(_generated, f"velocity_{regime.name}")


def probe_fn(regime: Regime):
    """``(x, params) -> (context_reliance, magnitude)`` on the counterfactual probe."""
    return getattr(_generated, f"probe_{regime.name}")


def probe_gap_fn(regime: Regime):
    """``(x, params) -> z_c* - z_a*``: the probe's logit gap (M_C is its sigmoid, so their maxima coincide)."""
    return getattr(_generated, f"probe_gap_{regime.name}")


def _f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


@requires_float64
def initial_state(params: ToyParams, regime: Regime) -> Coordinates:
    """The pretrained state: q = relation_score e_r (+ the initial attention tilt ``context_bias``: every
    context's score up by beta / 2, every subject's down by beta / 2), Delta W_V = 0."""
    names = state_names(regime)
    values = pretrained_coordinates(_f64(check_params(params).relation_score), _f64(params.context_bias))
    zero = jnp.zeros_like(values["kappa_er"])
    return tuple(values.get(name, zero) for name in names)


def pretrained_coordinates(relation_score, context_bias) -> dict:
    """The coordinates that start away from 0 (any array type): q = relation_score e_r plus the tilt,
    beta = ``context_bias`` split as +beta / sqrt(2) on theta_C and -beta / sqrt(2) on theta_S."""
    return {
        "kappa_er": relation_score,
        "kappa_thC": context_bias * SQRT_HALF,
        "kappa_thS": -context_bias * SQRT_HALF,
    }


def to_general(x: Coordinates, regime: Regime) -> Float[Array, "*batch state"]:
    """The general 166-coordinate state of a minimal state ``x`` (coordinates that never move are 0)."""
    n_state = _compiled().n_state
    x = jnp.stack(x, axis=-1)
    general = jnp.zeros((*x.shape[:-1], n_state), dtype=x.dtype)
    return general.at[..., general_index(regime)].set(x)


def to_general_host(x: Coordinates, regime: Regime) -> np.ndarray:
    """:func:`to_general` of a concrete state, on the host: one transfer, placed by NumPy (for one run, where
    the device's scatter costs more than the numbers)."""
    x = np.stack([np.asarray(xi, dtype=np.float64) for xi in jax.device_get(tuple(x))], axis=-1)
    general = np.zeros((*x.shape[:-1], _compiled().n_state), dtype=np.float64)
    general[..., general_index(regime)] = x
    return general


def from_general(general: Float[Array, "*batch state"], regime: Regime) -> Coordinates:
    return tuple(general[..., i] for i in general_index(regime))


def _engine(regime: Regime) -> Engine:
    """The engine of one regime. ``inputs = (params, lr_scale, steps)``: ``params`` a float64
    :class:`ToyParams`; ``lr_scale`` None or a ``(S,)`` array multiplying both learning rates at each step
    (a schedule); steps at or after ``steps`` (a traced int) leave the state as it is, so one compiled
    program serves any ``steps`` up to its scan length."""
    velocity = velocity_fn(regime)

    def init(inputs):
        params, _, _ = inputs
        return MinimalState(initial_state(params, regime), jnp.zeros((), dtype=jnp.int32))

    def advance(state, inputs):
        params, lr_scale, steps = inputs
        v, loss = velocity(state.x, symbol_values(params))
        if lr_scale is not None:
            scale = lr_scale[jnp.minimum(state.t, lr_scale.shape[0] - 1)]
            v = tuple(vi * scale for vi in v)
        return tuple(xi + vi for xi, vi in zip(state.x, v, strict=True)), loss

    def step(state, inputs):
        # Steps at or past ``steps`` keep the state and cost nothing: a real branch where one run is stepped,
        # a select under vmap. Unmasked runs take the same branch (their ``steps`` is the scan's length), so
        # the two compile to the same arithmetic and a padded run equals an exact one bit for bit.
        x, loss = jax.lax.cond(
            state.t < inputs[2],
            lambda: advance(state, inputs),
            lambda: (state.x, jnp.zeros_like(state.x[0])),
        )
        return MinimalState(x, state.t + 1), loss, {}

    def observe(state, inputs):
        return {"state": state.x}

    return Engine(
        name=f"reduced/{regime.name}",
        init=init,
        step=step,
        observe=observe,
        finish=lambda state, inputs: (state, observe(state, inputs)),
        magnitude=None,  # checked after the loop, on the recorded states (_first_imprecise)
    )


@functools.cache
def minimal_engine(regime: Regime) -> Engine:
    return _engine(regime)


# The online summary of M_C over the recorded steps (as :func:`cpi_theory.engine.summarize` would compute it
# from the whole curve: the first maximum is the peak) and the first recorded step whose M_C is not finite.
SUMMARY_FIELDS = ("start", "peak", "peak_step", "final", "final_loss", "first_nonfinite_reliance")


@functools.cache
def summary_engine(regime: Regime, record_every: int) -> Engine:
    """The engine of one regime that keeps only the summary of M_C at the steps 0, k, 2k, ... and the last
    (k = ``record_every``): memory O(state) per run, whatever the number of steps. Drive it with
    ``run_recorded(..., record_every=steps)``; the last record holds :data:`SUMMARY_FIELDS`.

    A step computes only what the summary needs: M_C as the sigmoid of the probe's logit gap (not the
    probe's magnitude), and no training loss: the divergence check reads the state instead (a loss is finite
    exactly when the state is: every logit averages finite table entries under a shifted softmax), so the
    loss's logarithms are computed once, for the final record."""
    velocity = velocity_fn(regime)
    probe = probe_fn(regime)
    gap_of = probe_gap_fn(regime)

    def note(running, mc, t, recorded):
        start, peak, peak_step, bad = running
        start = jnp.where(t == 0, mc, start)
        better = recorded & (mc > peak)
        bad = jnp.where(recorded & (bad < 0) & ~jnp.isfinite(mc), t, bad)
        return (start, jnp.where(better, mc, peak), jnp.where(better, t, peak_step), bad)

    def reliance(x, symbols):
        return jax.nn.sigmoid(gap_of(x, symbols))

    def base_step(inner, params):
        v, _ = velocity(inner.x, symbol_values(params))  # the loss is unused: XLA drops its computation
        x = tuple(xi + vi for xi, vi in zip(inner.x, v, strict=True))
        finite = functools.reduce(jnp.logical_and, [jnp.isfinite(xi) for xi in inner.x])
        return MinimalState(x, inner.t + 1), jnp.where(finite, 0.0, jnp.nan)

    def init(inputs):
        state = MinimalState(initial_state(inputs[0], regime), jnp.zeros((), dtype=jnp.int32))
        nan = jnp.full(jnp.shape(state.x[0]), jnp.nan)
        never = jnp.full(jnp.shape(state.x[0]), -1, dtype=jnp.int32)
        return state, (nan, jnp.full_like(nan, -jnp.inf), never, never)

    def step(state, inputs):
        inner, running = state
        mc = reliance(inner.x, symbol_values(inputs[0]))
        running = note(running, mc, inner.t, inner.t % record_every == 0)
        inner, finite = base_step(inner, inputs[0])
        return (inner, running), finite, {}

    def records(state, inputs, final: bool):
        inner, running = state
        symbols = symbol_values(inputs[0])
        mc, _ = probe(inner.x, symbols)
        _, loss = velocity(inner.x, symbols)
        if final:
            running = note(running, reliance(inner.x, symbols), inner.t, jnp.asarray(True))
        start, peak, peak_step, bad = running
        values = (start, peak, peak_step, mc, loss, bad)
        return {**dict(zip(SUMMARY_FIELDS, values, strict=True)), "state": inner.x}

    return Engine(
        name=f"reduced-summary/{regime.name}",
        init=init,
        step=step,
        observe=lambda state, inputs: records(state, inputs, final=False),
        finish=lambda state, inputs: (state, records(state, inputs, final=True)),
        magnitude=None,
    )


@requires_float64
def summary_step(regime: Regime, params: ToyParams):
    """``(step, state0)``: one step of the summaries engine as ``step(state, params) -> state`` (the probe's
    logit gap, the running summary, the update and the finiteness check), and the pretrained state of
    ``params``. What a sweep's loop repeats; for cost analysis (``benchmarks/roofline.py``)."""
    engine = summary_engine(regime, 1)

    def step(state, params):
        new, _, _ = engine.step(state, (as_float64(params), None, None))
        return new

    return step, engine.init((as_float64(params), None, None))


@requires_float64
@functools.partial(jax.jit, static_argnames=("steps", "record_every", "regime", "store_every"))
def minimal_summary(
    params: ToyParams, *, steps: int, record_every: int = 1, regime: Regime, store_every: int = 0
) -> Recorded:
    """The summary of M_C over ``steps`` exact GD steps (M_C taken every ``record_every`` steps and at the
    last): ``records`` holds :data:`SUMMARY_FIELDS` and, with ``store_every`` > 0, ``state``: the minimal
    states at steps 0, ``store_every``, 2 ``store_every``, ... and the last (leading axis), which is all a
    run keeps of its trajectory. Memory O(state) per run plus the stored states; vmap it over runs."""
    engine = summary_engine(regime, record_every)
    out = run_recorded(
        engine,
        (as_float64(params), None, jnp.asarray(steps, dtype=jnp.int32)),
        steps=steps,
        record_every=store_every or max(steps, 1),
        unroll=UNROLL[regime.value_trained],
    )
    records = {name: out.records[name][-1] for name in SUMMARY_FIELDS}
    if store_every:
        records["state"] = out.records["state"]
    return dataclasses.replace(out, records=records, final_state=out.final_state[0])


def metrics_fn(regime: Regime):
    """``(x, params) -> dict`` of the generated metrics (see ``_generated.metrics_<regime>``)."""
    return getattr(_generated, f"metrics_{regime.name}")


def _records(values: dict, params: dict, regime: Regime) -> dict:
    """The full engine's records (:func:`cpi_theory.metrics`) from the generated metrics of a state (or of
    states along a leading axis); ``params``: the generated code's :func:`symbol_values`."""
    z, mult = values["probe_logit"], values["probe_multiplicity"]
    classes = regime.classes
    # argmax ties go to the lowest token id, as in the full model: subjects, then training answers, then
    # c*, a*, the unused answers and r.
    subjects = ["s*", "nS"] + [f"{k}_s" for k in classes]
    answers_before = [f"{k}_{slot}" for k in classes for slot in ("c", "a", "m") if f"{k}_{slot}" in z]

    def best_of(logits, names):
        return functools.reduce(jnp.maximum, [jnp.where(mult[n] > 0, logits[n], -jnp.inf) for n in names])

    def best(names):
        return best_of(z, names)

    lower = subjects + answers_before
    counterfactual = (z["c*"] > best(lower)) & (z["c*"] >= best(["a*", "nA", "r"]))
    parametric = (z["a*"] > best([*lower, "c*"])) & (z["a*"] >= best(["nA", "r"]))
    nan = jnp.full_like(z["c*"], jnp.nan)
    # The closed-book query [s*, r] of the same held-out fact: its recall p(a*) is a softmax over every
    # token (each role counted with its multiplicity), shifted by the largest present logit; argmax ties
    # as above (c* is now an unused answer of lower id than a*: a tie with it is not recall).
    book = values["closed_book_logit"]
    shift = best_of(book, list(book))
    norm = sum(jnp.where(mult[n] > 0, mult[n] * jnp.exp(book[n] - shift), 0.0) for n in book)
    recall = jnp.exp(book["a*"] - shift) / norm
    memory = (book["a*"] > best_of(book, [*lower, "c*"])) & (book["a*"] >= best_of(book, ["nA", "r"]))

    def per_class(name):
        rows = []
        for k in CLASSES:
            if k not in classes or (name == "margin" and k not in values["margin"]):
                rows.append(nan)
                continue
            value = jnp.broadcast_to(jnp.asarray(values[name][k], dtype=jnp.float64), nan.shape)
            rows.append(jnp.where(_f64(params[f"n_{k}"]) != 0, value, nan))
        return jnp.stack(rows, axis=-1)

    loss = sum(values["weight"][k] * values["loss"][k] for k in classes)
    return {
        "context_reliance": jax.nn.sigmoid(z["c*"] - z["a*"]),
        "attention_context": values["probe_attention"]["c"],
        "attention_subject": values["probe_attention"]["s"],
        "counterfactual_accuracy": counterfactual.astype(jnp.float64),
        "parametric_accuracy": parametric.astype(jnp.float64),
        "memory_recall": jnp.broadcast_to(recall, nan.shape),
        "memory_accuracy": jnp.broadcast_to(memory, nan.shape).astype(jnp.float64),
        "loss": loss,
        "per_class": {
            name: per_class(name) for name in ("loss", "attention_context", "attention_subject", "margin")
        },
    }


@requires_float64
def minimal_metrics(x, params: ToyParams, regime: Regime) -> dict:
    """The full engine's records at minimal state(s) ``x`` (leading axes = states)."""
    symbols = symbol_values(params)
    return _records(metrics_fn(regime)(x, symbols), symbols, regime)


def _metrics(states, params: ToyParams, regime: Regime, which: str) -> dict:
    """The records of the recorded states (leading axis = recorded step), one vectorized pass."""
    if which == "context_reliance":
        mc, _ = probe_fn(regime)(states, symbol_values(params))
        return {"context_reliance": mc}
    return minimal_metrics(states, params, regime)


def _first_imprecise(states, steps_recorded, params, regime: Regime):
    """(first recorded step whose magnitude float64 cannot resolve, that magnitude): the loop's check,
    done after it on the recorded states (see ``Engine.magnitude``)."""
    _, magnitude = probe_fn(regime)(states, symbol_values(params))
    bad = magnitude * jnp.finfo(jnp.float64).eps > PRECISION_TOLERANCE
    index = jnp.argmax(bad)
    found = jnp.any(bad)
    return (
        jnp.where(found, steps_recorded[index], -1).astype(jnp.int32),
        jnp.where(found, magnitude[index], 0.0),
    )


@requires_float64
@functools.partial(jax.jit, static_argnames=("steps", "record_every", "regime", "metrics", "unroll"))
def _train(params, lr_scale, x0, n_steps, *, steps, record_every, regime, metrics, unroll=1):
    engine = minimal_engine(regime)
    params = as_float64(params)
    inputs = (params, lr_scale, n_steps)
    state0 = None if x0 is None else MinimalState(tuple(x0), jnp.zeros((), dtype=jnp.int32))
    out = run_recorded(
        engine,
        inputs,
        steps=steps,
        record_every=record_every,
        state0=state0,
        unroll=unroll,
    )
    states = out.records["state"]
    records = _metrics(states, params, regime, metrics)
    first_imprecise, magnitude = _first_imprecise(
        states, jnp.asarray(recorded_steps(steps, record_every), dtype=jnp.int32), params, regime
    )
    return dataclasses.replace(
        out,
        records={**records, "state": states},
        first_imprecise_step=first_imprecise,
        imprecise_magnitude=magnitude,
    )


def _capacity(steps: int) -> int:
    """The scan length that serves ``steps``: the next power of two (at least 64)."""
    return max(64, 1 << (int(steps) - 1).bit_length())


@requires_float64
def minimal_train(
    params: ToyParams,
    *,
    steps: int,
    record_every: int = 1,
    regime: Regime | None = None,
    metrics: str = "all",
    lr_scale=None,
    x0=None,
    compile_per_steps: bool = True,
    unroll: int = 1,
) -> Recorded:
    """``steps`` exact GD steps of the minimal reduced dynamics, recorded at 0, k, 2k, ... and the last step.

    ``params``: a :class:`cpi_theory.ToyParams` (one run: numbers or 0-d arrays; ``jax.vmap`` it over
    columns for many). ``metrics="all"`` gives the full engine's records; ``"context_reliance"`` only M_C
    (cheaper). ``lr_scale`` (optional, ``(steps,)``) multiplies both learning rates at each step. The
    records also hold ``state`` (the minimal state at each recorded step); ``final_state`` is a
    :class:`MinimalState`.

    With ``compile_per_steps=False`` and no ``lr_scale``, one compiled program serves every ``steps`` up to
    the next power of two: the scan runs that many steps with the ones past ``steps`` masked out (for
    single runs, where compiling costs more than the padding; the records are the same, returned as NumPy
    arrays when the inputs are concrete).

    ``unroll``: steps per loop iteration (:data:`SINGLE_RUN_UNROLL` is what ``simulate`` uses for one run;
    keep 1 under ``jax.vmap`` or derivatives, where unrolling was slower).
    """
    check_params(params)
    regime = regime_of(params) if regime is None else regime
    if metrics not in ("all", "context_reliance"):
        raise ValueError(f'metrics: must be "all" or "context_reliance", got {metrics!r}')
    if lr_scale is not None:
        lr_scale = _f64(lr_scale)
        if lr_scale.shape != (steps,):
            raise ValueError(f"lr_scale: need one factor per step, shape ({steps},), got {lr_scale.shape}")
    if compile_per_steps or lr_scale is not None or record_every != 1:
        return _train(
            params,
            lr_scale,
            x0,
            jnp.asarray(steps, dtype=jnp.int32),
            steps=steps,
            record_every=record_every,
            regime=regime,
            metrics=metrics,
            unroll=unroll,
        )
    capacity = _capacity(steps)
    out = _train(
        params,
        None,
        x0,
        jnp.asarray(steps, dtype=jnp.int32),
        steps=capacity,
        record_every=1,
        regime=regime,
        metrics=metrics,
        unroll=unroll,
    )
    keep = steps + 1  # records 0..steps; the ones after are copies of the state at ``steps``
    records = out.records
    if not any(isinstance(r, jax.core.Tracer) for r in jax.tree.leaves(records)):
        records = jax.device_get(records)  # one transfer, then NumPy slices (not one dispatch per record)
    return Recorded(
        records=jax.tree.map(lambda r: r[:keep], records),
        final_state=MinimalState(out.final_state.x, jnp.asarray(steps, dtype=jnp.int32)),
        first_nonfinite_step=jnp.where(out.first_nonfinite_step >= steps, -1, out.first_nonfinite_step),
        first_imprecise_step=jnp.minimum(out.first_imprecise_step, steps),
        imprecise_magnitude=out.imprecise_magnitude,
    )


# The names of the face (cpi_theory.reduced).
minimal_initial_state = initial_state
minimal_state_names = state_names


def minimal_velocity(regime: Regime):
    """``(x, params) -> (v, loss)`` for a :class:`ToyParams`: ``x + v`` is one exact GD step of the regime's
    minimal state ``x``, ``loss`` the training loss at ``x`` (the generated velocity, typed at its door)."""
    velocity = velocity_fn(regime)
    return lambda x, params: velocity(x, symbol_values(params))
