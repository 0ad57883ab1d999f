"""The boundary between the typed parameters and the generated code: :func:`symbol_values`.

The sympy derivation (:mod:`._symbolic`) and the code generated from it (:mod:`._generated`) name a run's
numbers by their symbols (``n_CS``, ``K_A``, ...); everywhere else they travel as
:class:`cpi_theory.config.ToyParams`. This is the one place where one becomes the other.
"""

import jax.numpy as jnp

from .._errors import ConfigError
from .._precision import requires_float64
from ..config._data_class import DataClass
from ..config._params import ToyParams

# The symbols of the derivation, in the order of PARAM_NAMES: the class sizes (n_<DataClass.symbol>), then
# the vocabulary, the value logits, the pretrained probabilities, rho and the learning rates.
_CLASS_SYMBOLS = tuple(f"n_{data_class.symbol}" for data_class in DataClass)
_SCALAR_SYMBOLS = {
    "K_A": "n_answers",
    "K_S": "n_subjects",
    "o_c": "o_c",
    "o_r": "o_r",
    "delta_c": "delta_c",
    "delta_m": "delta_m",
    "relation_score": "relation_score",
    "lr_kq": "lr_kq",
    "lr_v": "lr_v",
}
PARAM_NAMES = (*_CLASS_SYMBOLS, *_SCALAR_SYMBOLS)


def _f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def check_params(params) -> ToyParams:
    """``params`` itself if it is a :class:`ToyParams`; a :class:`ConfigError` naming ``params`` otherwise."""
    if not isinstance(params, ToyParams):
        raise ConfigError(
            "params",
            f"must be a cpi_theory.ToyParams (e.g. cpi_theory.ToyParams.from_config(config)), got "
            f"{type(params).__name__}",
        )
    return params


def as_float64(params: ToyParams) -> ToyParams:
    """Every leaf as a float64 JAX array (numbers, NumPy columns and tracers alike)."""
    return check_params(params).map(_f64)


def symbol_columns(params: ToyParams, convert) -> dict:
    """The generated code's mapping of :data:`PARAM_NAMES` to ``convert`` of each parameter's value(s)."""
    values = {symbol: convert(size) for symbol, size in zip(_CLASS_SYMBOLS, params.class_sizes, strict=True)}
    values.update({symbol: convert(getattr(params, field)) for symbol, field in _SCALAR_SYMBOLS.items()})
    return values


@requires_float64
def symbol_values(params: ToyParams) -> dict:
    """The generated code's mapping of :data:`PARAM_NAMES` to float64 arrays (elementwise over runs)."""
    return symbol_columns(check_params(params), _f64)
