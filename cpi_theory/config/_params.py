"""The typed parameters of runs: :class:`ToyParams`, one pytree for one run or for columns of many.

Every number a run's dynamics depend on, named for what it is; the class sizes sit in :class:`ClassSizes`,
whose fields are the :class:`DataClass` keys. A leaf is a number (one run: :meth:`ToyParams.from_config`),
a NumPy column with a leading run axis (many runs: :meth:`ToyParams.from_columns`, a sweep's run table,
:meth:`ToyParams.stack`) or a JAX array / tracer inside a jitted, vmapped or differentiated engine. Both are
``NamedTuple``\\ s, so JAX treats them as pytrees with no registration (and this module needs no JAX).

``steps`` and ``record_every`` are not here: they fix the length of the compiled loop, not a run's numbers.
Validation is :data:`cpi_theory.config.RULES`, the table :class:`Config` checks too.
"""

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .._errors import ConfigError
from ._config import Config
from ._data_class import DataClass
from ._rules import (
    CLASS_COUNT_KEYS,
    CONTEXT_BIAS_RULE,
    RULES,
    Rule,
    np,  # NumPy, imported on first use (the command line reads this module before NumPy loads)
)

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Config)}


class ClassSizes(NamedTuple):
    """Points per data class (SPEC.md §4, §7), a field per :attr:`DataClass.key`, in DataClass order.

    Real sizes are mixture weights (the reduced engine): a class of size 2.5 weighs in the mean loss as
    2.5 points would."""

    context_critical: Any = _DEFAULTS["n_context_critical"]
    non_context_critical: Any = _DEFAULTS["n_non_context_critical"]
    subject_only: Any = _DEFAULTS["n_subject_only"]
    counterfactual_augmented: Any = _DEFAULTS["n_counterfactual_augmented"]

    def of(self, data_class: DataClass):
        """The size of ``data_class``."""
        return getattr(self, data_class.key)

    def replace(self, **sizes) -> "ClassSizes":
        """These sizes with some replaced, by :attr:`DataClass.key` (``non_context_critical=5``)."""
        return self._replace(**sizes)

    @property
    def total(self):
        """Training points of every class."""
        return (
            self.context_critical
            + self.non_context_critical
            + self.subject_only
            + self.counterfactual_augmented
        )


#: The fields of ToyParams that are Config keys of the same name (all but the class sizes and the tilt).
SCALAR_KEYS = (
    "n_answers",
    "n_subjects",
    "delta_c",
    "delta_m",
    "o_c",
    "o_r",
    "relation_score",
    "lr_kq",
    "lr_v",
)
#: The initial attention tilt: not a Config key (the pretrained state of SPEC.md has none), 0 by default.
CONTEXT_BIAS = "context_bias"
#: Every key of :meth:`ToyParams.columns`: the Config keys of a run's numbers, then ``context_bias``.
PARAM_KEYS = (*SCALAR_KEYS[:2], *CLASS_COUNT_KEYS, *SCALAR_KEYS[2:], CONTEXT_BIAS)


class ToyParams(NamedTuple):
    """Every number one run of the toy model depends on (or a column of them per run).

    - ``class_sizes``: points of each data class (:class:`ClassSizes`);
    - ``n_answers``, ``n_subjects``: the vocabulary K_A, K_S (the reduced engine needs them as numbers only);
    - ``delta_c``, ``delta_m``: the pretrained self-copy and memory probabilities; ``o_c``, ``o_r``: the
      value logits of unused answers and of the relation;
    - ``relation_score``: rho in W_KQ(0) = rho phi(r) phi(r)^T; ``context_bias``: the initial attention tilt
      beta (every context's score up by beta / 2, every subject's down by beta / 2; 0 in SPEC.md);
    - ``lr_kq``, ``lr_v``: the learning rates of W_KQ and W_V.

    Defaults are :class:`Config`'s (the paper's configuration).
    """

    class_sizes: ClassSizes = ClassSizes()
    n_answers: Any = _DEFAULTS["n_answers"]
    n_subjects: Any = _DEFAULTS["n_subjects"]
    delta_c: Any = _DEFAULTS["delta_c"]
    delta_m: Any = _DEFAULTS["delta_m"]
    o_c: Any = _DEFAULTS["o_c"]
    o_r: Any = _DEFAULTS["o_r"]
    relation_score: Any = _DEFAULTS["relation_score"]
    lr_kq: Any = _DEFAULTS["lr_kq"]
    lr_v: Any = _DEFAULTS["lr_v"]
    context_bias: Any = 0.0

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: Config | Mapping[str, Any] | None = None, *, context_bias=0.0
    ) -> "ToyParams":
        """One run's parameters (Python numbers) from a :class:`Config` (or a mapping of overrides)."""
        if not isinstance(config, Config):
            config = Config.from_mapping(config)
        return cls.from_columns({**config.to_dict(), CONTEXT_BIAS: context_bias}, validate=False)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], *, validate: bool = True) -> "ToyParams":
        """Parameters from a mapping of :data:`PARAM_KEYS` (Config key names) to numbers or columns; keys
        left out take their defaults (other Config keys, such as ``steps``, are ignored). With ``validate``
        (default), every run is checked against :data:`RULES` (a :class:`ConfigError` names the key)."""
        unknown = sorted(set(columns) - set(PARAM_KEYS) - set(Config.keys()))
        if unknown:
            raise ConfigError(unknown[0], f"unknown parameter (valid: {', '.join(PARAM_KEYS)})")
        value = {key: columns.get(key, _DEFAULTS.get(key, 0.0)) for key in PARAM_KEYS}
        sizes = ClassSizes(*(value[data_class.count_key] for data_class in DataClass))
        params = cls(sizes, **{key: value[key] for key in (*SCALAR_KEYS, CONTEXT_BIAS)})
        if validate:
            params.validate()
        return params

    @classmethod
    def stack(cls, runs: Iterable["ToyParams"]) -> "ToyParams":
        """Columns (float64, leading run axis) from one-run parameters."""
        runs = list(runs)
        if not runs:
            raise ValueError("ToyParams.stack: need at least one run")
        return cls.from_columns(
            {key: np.stack([np.float64(r.columns()[key]) for r in runs]) for key in PARAM_KEYS},
            validate=False,
        )

    # -- views --------------------------------------------------------------------------------------------
    def columns(self) -> dict[str, Any]:
        """Config key name -> leaf (class sizes under their ``n_*`` keys, plus ``context_bias``)."""
        out = {key: getattr(self, key) for key in SCALAR_KEYS}
        out.update({data_class.count_key: self.class_sizes.of(data_class) for data_class in DataClass})
        out[CONTEXT_BIAS] = self.context_bias
        return {key: out[key] for key in PARAM_KEYS}

    def to_config(self, **run_length) -> Config:
        """The :class:`Config` of one run (``steps``, ``record_every`` given as keywords); the tilt must be 0."""
        if np.ndim(self.context_bias) or self.context_bias != 0:
            raise ConfigError(CONTEXT_BIAS, "a Config has no initial attention tilt: context_bias must be 0")
        values = {
            k: v.item() if isinstance(v, np.generic | np.ndarray) else v for k, v in self.columns().items()
        }
        del values[CONTEXT_BIAS]
        return Config.from_mapping({**values, **run_length})

    def map(self, function: Callable[[Any], Any]) -> "ToyParams":
        """``function`` applied to every leaf (e.g. ``np.asarray``, or taking some runs of columns)."""
        return ToyParams(ClassSizes(*map(function, self.class_sizes)), *map(function, self[1:]))

    def take(self, runs) -> "ToyParams":
        """The runs ``runs`` (an index array or slice) of columns; a leaf that is one number stays one."""
        return self.map(lambda leaf: leaf[runs] if np.ndim(leaf) else leaf)

    def replace(self, **fields) -> "ToyParams":
        """These parameters with some fields replaced (``lr_v=0.3``, ``class_sizes=...``)."""
        return self._replace(**fields)

    def with_columns(self, **columns) -> "ToyParams":
        """These parameters with some replaced, named by their :data:`PARAM_KEYS` (the Config keys:
        ``n_non_context_critical=5``, ``lr_v=0.3``; works on traced values too)."""
        return ToyParams.from_columns({**self.columns(), **columns}, validate=False)

    def with_class_sizes(self, **sizes) -> "ToyParams":
        """These parameters with some class sizes replaced, by :attr:`DataClass.key`."""
        return self._replace(class_sizes=self.class_sizes._replace(**sizes))

    @property
    def n_runs(self) -> int | None:
        """The length of the run axis (None when every leaf is one number)."""
        lengths = {np.shape(leaf)[0] for leaf in self.leaves() if np.ndim(leaf)}
        if len(lengths) > 1:
            raise ValueError(f"ToyParams: columns of different lengths {sorted(lengths)}")
        return lengths.pop() if lengths else None

    def leaves(self) -> tuple:
        return (*self.class_sizes, *self[1:])

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self, extra_rules: Sequence[Rule] = ()) -> "ToyParams":
        """Check every run against :data:`RULES` (and ``extra_rules``, e.g. an engine's own); raise a
        :class:`ConfigError` naming the key of the first rule broken (and the run, for columns)."""
        values = {key: np.asarray(value, dtype=np.float64) for key, value in self.columns().items()}
        for key, value in values.items():
            if not np.isfinite(value).all():
                run = int(np.argmin(np.isfinite(value).ravel()))
                raise ConfigError(key, f"must be finite, got {value.ravel()[run]!r}{_which(value, run)}")
        for rule in (*RULES, CONTEXT_BIAS_RULE, *extra_rules):
            run = rule.first_broken({key: values[key] for key in rule.reads})
            if run is not None:
                shape = np.shape(rule.holds(values))
                one = {
                    key: _number(key, np.broadcast_to(values[key], shape).ravel()[run]) for key in rule.reads
                }
                raise ConfigError(rule.key, rule.message(one) + _which(np.asarray(rule.holds(values)), run))
        return self


def _number(key: str, value) -> int | float:
    """One run's value as Config shows it: counts and vocabulary sizes as ints where whole, else floats."""
    value = float(value)
    whole = key in CLASS_COUNT_KEYS or key in ("n_answers", "n_subjects")
    return int(value) if whole and value.is_integer() else value


def _which(column, run: int) -> str:
    return f" (run {run})" if np.ndim(column) else ""
