"""float64 for theory code: how library users get it, and the guard that refuses float32 silently.

Every public function that computes theory either refuses to run without float64 (:func:`requires_float64`,
raising :class:`Float64Required`) or computes in float64 whatever JAX's setting (NumPy, SciPy, SymPy):
``tests/test_float64.py`` calls each of them in a fresh process without float64 and checks which.
"""

import functools

from ._errors import Float64Required

# JAX is imported inside the functions, not with this module: the command line imports the package's light
# modules to check its input and answer --help before any JAX start-up (about 1-3 s).


def enable_float64() -> None:
    """Turn on float64 in JAX for this process (call before creating arrays)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def require_float64() -> None:
    """Raise :class:`Float64Required` unless float64 is enabled: theory results in float32 are silently wrong.

    Honours ``with jax.enable_x64(True):`` as well as the global setting.
    """
    import jax

    if not jax.config.jax_enable_x64:
        raise Float64Required()


def requires_float64(function):
    """Decorator: ``function`` raises :class:`Float64Required` at every call made without float64.

    A jitted function keeps its ahead-of-time methods (``lower``, ``trace``, ``eval_shape``); the check is
    one configuration read, negligible beside any JAX call.
    """

    @functools.wraps(function)
    def checked(*args, **kwargs):
        require_float64()
        return function(*args, **kwargs)

    for name in ("lower", "trace", "eval_shape", "_cache_size", "clear_cache"):
        if hasattr(function, name):
            setattr(checked, name, getattr(function, name))
    return checked
