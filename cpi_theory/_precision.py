"""float64 for theory code: how library users get it, and the guard that refuses float32 silently."""

import jax

from ._errors import Float64Required


def enable_float64() -> None:
    """Turn on float64 in JAX for this process (call before creating arrays)."""
    jax.config.update("jax_enable_x64", True)


def require_float64() -> None:
    """Raise :class:`Float64Required` unless float64 is enabled: theory results in float32 are silently wrong."""
    if not jax.config.jax_enable_x64:
        raise Float64Required()
