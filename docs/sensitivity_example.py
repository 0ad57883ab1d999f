"""How the final context reliance M_C(300) of the default trajectory depends on the C+S fraction.

The default configuration has 10 context-critical (C) and 10 context-redundant (C+S) points. Keep 20 points
and move the C+S fraction f: n_C = 20 (1 - f), n_CS = 20 f (class sizes are real numbers, the weights of a
data mixture). ``jax.grad`` gives d M_C(300) / d f at f = 0.5 through the 300 exact gradient-descent steps;
a central finite difference checks it. Run: ``python docs/sensitivity_example.py`` (docs/minimal_engine.md).
"""

import jax
import jax.numpy as jnp

import cpi_theory as cpi
from cpi_theory.reduced import Regime, minimal_train

cpi.enable_float64()

STEPS = 300
TOTAL = jnp.asarray(20.0, dtype=jnp.float64)
# The default configuration's regime (W_V frozen, no S or augmented points). It covers n_C and n_CS; a
# derivative in lr_v, n_S or n_AUG would need a regime that includes them (GENERAL covers everything).
FROZEN = Regime(value_trained=False, has_s=False, has_aug=False)
PARAMS = cpi.reduced_params(cpi.Config())


def final_reliance(f):
    """M_C after ``STEPS`` steps with the C+S fraction ``f`` of 20 points."""
    params = PARAMS.with_class_sizes(context_critical=TOTAL * (1 - f), non_context_critical=TOTAL * f)
    out = minimal_train(params, steps=STEPS, regime=FROZEN, metrics="context_reliance")
    return out.records["context_reliance"][-1]


def main():
    f = jnp.asarray(0.5, dtype=jnp.float64)
    value, slope = jax.value_and_grad(final_reliance)(f)
    h = 1e-6
    fd = (final_reliance(f + h) - final_reliance(f - h)) / (2 * h)
    print(f"M_C({STEPS}) at f = 0.5:         {float(value):.12f}")
    print(f"d M_C({STEPS}) / d f (jax.grad): {float(slope):.12f}")
    print(f"central difference, h = {h:g}: {float(fd):.12f}")
    print(f"relative difference:           {abs(float(slope - fd)) / abs(float(fd)):.1e}")


if __name__ == "__main__":
    main()
