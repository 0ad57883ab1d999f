"""Issue 11 item 3: the minimal reduced engine is differentiable.

``jax.grad`` and ``jax.jacfwd`` of trajectory summaries (final M_C, the peak, the depth peak - final, a
smooth peak ``tau * logsumexp(M_C / tau)``) with respect to every continuous parameter (delta_c, delta_m,
the class sizes as real numbers, lr_kq, lr_v, relation_score and the initial attention tilt
``context_bias``) agree with central finite differences to 1e-6 relative; at lr_v = 0 the general regime
is the frozen one, states and derivatives; and the documented example (d M_C(300) / d f, f the C+S
fraction at 20 points, docs/minimal_engine.md) holds.

Compile time: differentiating the 166-coordinate general velocity is slow to compile with XLA's default
CPU pipeline (its fusion pass duplicates the straight-line scalar code: measured 2.5-6 minutes per mode
on the 2-core test machine). The derivative programs here are compiled with XLA fusion off and the
backend optimisation level 0 (``FAST_COMPILE``), about 20-40 s each there; the same options compile the
forward runs of the finite differences in 5 s instead of 45 s. The options change how XLA compiles the
program, not what it computes (the 150-step states agree to 2e-15): what is differentiated is the public
``minimal_train``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

import cpi_theory as cpi
from cpi_theory.reduced import GENERAL, Regime, minimal_state_names, minimal_train

STEPS = 150
TAU = 0.01
RTOL = 1e-6
# Relative errors are |g_ad - g_fd| / max(|g_fd|, FLOOR): every derivative tested here is above 1e-5.
FLOOR = 1e-8
FAST_COMPILE = {"xla_disable_hlo_passes": "fusion", "xla_backend_optimization_level": 0}
SUMMARIES = ("final", "peak", "depth", "smooth_peak")
# By their ToyParams column names (cpi_theory.config.PARAM_KEYS).
PARAMS = (
    "delta_c",
    "delta_m",
    "n_context_critical",
    "n_non_context_critical",
    "n_subject_only",
    "n_counterfactual_augmented",
    "lr_kq",
    "lr_v",
    "relation_score",
    "context_bias",
)
# Finite-difference step per parameter, relative to max(1, |x|), for the 4th-order central stencil
# (truncation O(h^4), rounding O(eps / h)): chosen where the stencil's error is ~1e-10 or less, and small
# enough that the argmax step of the trajectory (the peak) is the same at all stencil points.
FD_STEP = {
    "delta_c": 1e-5,
    "delta_m": 1e-4,
    "n_context_critical": 1e-4,
    "n_non_context_critical": 1e-4,
    "n_subject_only": 1e-3,
    "n_counterfactual_augmented": 1e-3,
    "lr_kq": 1e-4,
    "lr_v": 1e-4,
    "relation_score": 1e-3,
    "context_bias": 1e-3,
}
# Every class present, W_V trained, and relation_score = -3 so that the relation token's attention
# (~2%) and hence relation_score matter (at the default -30 its derivative is ~1e-14).
BASE = {"lr_v": 0.1, "n_subject_only": 2, "n_counterfactual_augmented": 1, "relation_score": -3.0}
FROZEN_S_AUG = Regime(value_trained=False, has_s=True, has_aug=True)
FROZEN = Regime(value_trained=False, has_s=False, has_aug=False)


def f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def make_params(**overrides) -> cpi.ToyParams:
    return cpi.reduced_params(cpi.Config.from_mapping({**BASE, **overrides}), context_bias=f64(0.0))


def split(params):
    """(theta: the differentiated parameters by name, rest: the parameters they replace)."""
    columns = params.columns()
    return {k: columns[k] for k in PARAMS}, params


def reliance(params, regime=GENERAL, steps=STEPS):
    out = minimal_train(params, steps=steps, regime=regime, metrics="context_reliance")
    return out.records["context_reliance"]


def summaries(mc):
    peak = jnp.max(mc)
    final = mc[-1]
    smooth_peak = f64(TAU) * logsumexp(mc / f64(TAU))
    return jnp.stack([final, peak, peak - final, smooth_peak])


def summaries_of(theta, rest, regime=GENERAL):
    return summaries(reliance(rest.with_columns(**theta), regime))


def fast_compile(fn, *args):
    """``jax.jit(fn)`` compiled for ``args``' shapes with ``FAST_COMPILE``; it runs at any values."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


def trajectory_program(regime, steps=STEPS):
    """Compiled ``params -> records`` (``context_reliance`` and ``state``) of ``minimal_train``."""

    def records(params):
        return minimal_train(params, steps=steps, regime=regime, metrics="context_reliance").records

    return fast_compile(records, make_params())


def central_difference(trajectory, params, name):
    """4th-order central difference of the summaries in ``name`` and the argmax steps at the stencil."""
    x = float(params.columns()[name])
    h = FD_STEP[name] * max(1.0, abs(x))
    values, argmax = [], []
    for k in (-2, -1, 1, 2):
        mc = trajectory(params.with_columns(**{name: f64(x + k * h)}))["context_reliance"]
        values.append(np.asarray(summaries(mc)))
        argmax.append(int(jnp.argmax(mc)))
    fd = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
    return fd, argmax


def relative_error(ad, fd):
    return np.abs(np.asarray(ad) - fd) / np.maximum(np.abs(fd), FLOOR)


@pytest.fixture(scope="module")
def base():
    return make_params()


@pytest.fixture(scope="module")
def general_trajectory():
    return trajectory_program(GENERAL)


@pytest.fixture(scope="module")
def forward_jacobian():
    """``jax.jacfwd`` of the four summaries in the ten parameters (forward mode)."""
    theta, rest = split(make_params())
    return fast_compile(jax.jacfwd(summaries_of), theta, rest)


@pytest.fixture(scope="module")
def reverse_jacobian():
    """``jax.grad`` of each summary (reverse mode; one pass per summary, vmapped over the summaries)."""

    def grads(theta, rest):
        def weighted(theta, weights):
            return weights @ summaries_of(theta, rest)

        eye = jnp.eye(len(SUMMARIES), dtype=jnp.float64)
        return jax.vmap(jax.grad(weighted), in_axes=(None, 0))(theta, eye)

    theta, rest = split(make_params())
    return fast_compile(grads, theta, rest)


@pytest.fixture(scope="module")
def base_derivatives(base, forward_jacobian, reverse_jacobian):
    theta, rest = split(base)
    return forward_jacobian(theta, rest), reverse_jacobian(theta, rest)


def test_base_trajectory_rises_and_falls(base, general_trajectory):
    """The base configuration is interior: the peak is strictly inside the horizon, the depth positive."""
    mc = np.asarray(general_trajectory(base)["context_reliance"])
    assert 0 < np.argmax(mc) < STEPS
    assert mc.max() - mc[-1] > 0.01
    assert mc[0] < mc[-1] < mc.max()


@pytest.mark.parametrize("name", PARAMS)
def test_grad_and_jacfwd_match_finite_differences(name, base, base_derivatives, general_trajectory):
    forward, reverse = base_derivatives
    fd, argmax = central_difference(general_trajectory, base, name)
    assert len(set(argmax)) == 1, f"{name}: the peak step moves inside the stencil {argmax}"
    assert np.all(np.abs(fd) > 1e-5), f"{name}: the parameter should matter, fd = {fd}"
    for mode, ad in (("jacfwd", forward[name]), ("grad", reverse[name])):
        err = relative_error(ad, fd)
        assert np.all(err < RTOL), (
            f"{name} ({mode}): relative errors {dict(zip(SUMMARIES, err, strict=True))}"
        )
    np.testing.assert_allclose(reverse[name], forward[name], rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    "overrides,frozen",
    [
        ({"lr_v": 0.0}, FROZEN_S_AUG),
        ({"lr_v": 0.0, "n_subject_only": 0, "n_counterfactual_augmented": 0}, FROZEN),
    ],
)
def test_general_regime_at_lr_v_zero_is_the_frozen_regime(overrides, frozen, general_trajectory):
    params = make_params(**overrides)
    general = general_trajectory(params)
    small = minimal_train(params, steps=STEPS, regime=frozen, metrics="context_reliance").records
    names = minimal_state_names(GENERAL)
    index = np.asarray([names.index(n) for n in minimal_state_names(frozen)])
    values = np.asarray([n.startswith("w_") for n in names])
    states = np.asarray(general["state"])  # (coordinate, recorded step)
    np.testing.assert_allclose(states[index], np.asarray(small["state"]), rtol=1e-12, atol=1e-13)
    # W_V never moves. (Without S / augmented points, the general regime's per-point attention coordinates
    # of those empty classes do move, with weight 0 in everything: M_C below.)
    np.testing.assert_array_equal(states[values], 0.0)
    np.testing.assert_allclose(general["context_reliance"], small["context_reliance"], rtol=1e-12, atol=0)


def test_derivatives_at_lr_v_zero_are_the_frozen_regimes(forward_jacobian, general_trajectory):
    """At lr_v = 0 the general program's derivatives in every other parameter are the frozen regime's, and
    the one in lr_v (which the frozen regime cannot see) matches finite differences."""
    params = make_params(lr_v=0.0)
    theta, rest = split(params)
    general = forward_jacobian(theta, rest)
    frozen = fast_compile(
        jax.jacfwd(lambda theta, rest: summaries_of(theta, rest, FROZEN_S_AUG)), theta, rest
    )
    frozen = frozen(theta, rest)
    for name in PARAMS:
        if name == "lr_v":
            assert np.all(np.asarray(frozen[name]) == 0)
            continue
        np.testing.assert_allclose(general[name], frozen[name], rtol=1e-9, atol=1e-14, err_msg=name)
    fd, _ = central_difference(general_trajectory, params, "lr_v")
    err = relative_error(general["lr_v"], fd)
    assert np.all(np.abs(fd) > 1e-5)
    assert np.all(err < RTOL), f"lr_v at 0: relative errors {err}"


def test_fraction_sensitivity_example():
    """docs/minimal_engine.md: d M_C(300) / d f along the default trajectory, n_C = 20 (1 - f), n_CS = 20 f."""
    params = cpi.reduced_params(cpi.Config())
    total = f64(20.0)

    def final_reliance(f):
        mixed = params.with_class_sizes(context_critical=total * (1 - f), non_context_critical=total * f)
        return reliance(mixed, FROZEN, steps=300)[-1]

    f = f64(0.5)
    value, slope = fast_compile(jax.value_and_grad(final_reliance), f)(f)
    # Finite differences through the public call, compiled as usual (FAST_COMPILE computes the same numbers).
    np.testing.assert_allclose(value, reliance(params, FROZEN, steps=300)[-1], rtol=1e-14)
    h = 1e-3
    stencil = [float(final_reliance(f64(0.5 + k * h))) for k in (-2, -1, 1, 2)]
    fd = (stencil[0] - 8 * stencil[1] + 8 * stencil[2] - stencil[3]) / (12 * h)
    assert abs(float(slope)) > 1e-3
    assert abs(float(slope) - fd) / abs(fd) < RTOL
