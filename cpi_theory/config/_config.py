"""The one configuration of the toy model: a frozen, validated dataclass.

Keys and defaults are those of the reference trajectories in ``shared/reference/``; see the README for the
meaning of each key. Every rule is checked at construction so a bad value fails loudly, naming the key.
"""

import dataclasses
import json
import math
import pathlib
import typing
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigError
from ._data_class import DataClass

# The Config fields holding the point counts of the data classes (SPEC.md §4, §7), in DataClass order.
_CLASS_COUNT_KEYS = tuple(data_class.count_key for data_class in DataClass)


# no_type_check: the fields' types are what Config *stores*; what it is given is checked by its own rules,
# which name the key and the rule (a runtime type checker would refuse first, without either).
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class Config:
    """Toy-model configuration (SPEC.md). Build with :meth:`Config.from_mapping` or keyword overrides."""

    n_answers: int = 50
    n_subjects: int = 40
    n_context_critical: int | float = 10
    n_non_context_critical: int | float = 10
    n_subject_only: int | float = 0
    n_counterfactual_augmented: int | float = 0
    delta_c: float = 0.2
    delta_m: float = 0.6
    o_c: float = 0.0
    o_r: float = 0.0
    relation_score: float = -30.0
    lr_kq: float = 1.0
    lr_v: float = 0.0
    steps: int = 300
    record_every: int = 1

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)
        _check_rules(self)

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(
        cls, overrides: Mapping[str, Any] | None = None, base: "Config | None" = None
    ) -> "Config":
        """Defaults (or ``base``) updated by ``overrides``; unknown keys are rejected by name."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(cls.keys()))
        if unknown:
            raise ConfigError(unknown[0], f"unknown config key (valid keys: {', '.join(cls.keys())})")
        start = dataclasses.asdict(base) if base is not None else {}
        return cls(**{**start, **overrides})

    @classmethod
    def from_json_file(cls, path: str) -> "Config":
        """Read a JSON object of overrides (a reference file's ``config`` object works too)."""
        data = read_json_file(path, "--config")
        if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
            data = data["config"]  # a trajectory file: take its config
        if not isinstance(data, dict):
            raise ConfigError("--config", f"{path} must hold a JSON object of config keys")
        return cls.from_mapping(data)

    def replace(self, **overrides: Any) -> "Config":
        return Config.from_mapping(overrides, base=self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- derived quantities -------------------------------------------------------------------------------
    def class_counts(self) -> tuple[int | float, ...]:
        """Points per data class, in :class:`DataClass` order."""
        return tuple(getattr(self, k) for k in _CLASS_COUNT_KEYS)

    def subjects_needed(self) -> int | float:
        """Distinct subjects: one per training point plus the counterfactual test subject s*."""
        return sum(self.class_counts()) + 1

    def answers_needed(self) -> int | float:
        """Distinct answers: one per C/C+S/S point, two per augmented point (context and memory), c* and a*."""
        n_c, n_cs, n_s, n_aug = self.class_counts()
        return n_c + n_cs + n_s + 2 * n_aug + 2

    def has_integer_class_counts(self) -> bool:
        return all(isinstance(n, int) for n in self.class_counts())


def _types() -> dict[str, str]:
    kinds = {}
    for f in dataclasses.fields(Config):
        if f.name in _CLASS_COUNT_KEYS:
            kinds[f.name] = "count"
        elif f.type is int or f.type == "int":
            kinds[f.name] = "int"
        else:
            kinds[f.name] = "real"
    return kinds


_KINDS = _types()


def _coerce(key: str, value: Any) -> int | float:
    kind = _KINDS[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        want = {"int": "an integer", "real": "a real number", "count": "a number (a point count)"}[kind]
        raise ConfigError(key, f"must be {want}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be finite, got {value!r}")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(key, f"must be an integer, got {value!r}")
            value = int(value)
        return value
    if kind == "count":
        # Counts stay integers where they are integral; a real count is a class size (mixture weight)
        # that only the reduced engine accepts.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    return float(value)


def _check_rules(cfg: Config) -> None:
    def rule(ok: bool, key: str, message: str):
        if not ok:
            raise ConfigError(key, message)

    rule(cfg.n_answers >= 2, "n_answers", f"must be >= 2, got {cfg.n_answers}")
    rule(cfg.n_subjects >= 1, "n_subjects", f"must be >= 1, got {cfg.n_subjects}")
    for key in _CLASS_COUNT_KEYS:
        value = getattr(cfg, key)
        rule(value >= 0, key, f"must be >= 0 (a count of points), got {value}")
    rule(
        sum(cfg.class_counts()) > 0, "n_context_critical", "the training set is empty: every class count is 0"
    )
    for key in ("delta_c", "delta_m"):
        value = getattr(cfg, key)
        rule(0.0 < value < 1.0, key, f"must be a probability strictly between 0 and 1, got {value}")
    rule(
        cfg.delta_m > 2 * cfg.delta_c,
        "delta_m",
        f"must be > 2*delta_c (memory beats self-copy, paper Assumption 6), got delta_m={cfg.delta_m}, "
        f"delta_c={cfg.delta_c}",
    )
    for key in ("o_c", "o_r"):
        value = getattr(cfg, key)
        # exp(o) enters the normaliser Z of the value table; beyond ~709 it overflows to inf.
        rule(abs(value) <= 700.0, key, f"must lie in [-700, 700] (exp({key}) must be finite), got {value}")
    for key in ("lr_kq", "lr_v"):
        value = getattr(cfg, key)
        rule(value >= 0.0, key, f"must be >= 0 (a learning rate), got {value}")
    rule(cfg.steps >= 0, "steps", f"must be >= 0, got {cfg.steps}")
    rule(cfg.record_every >= 1, "record_every", f"must be >= 1, got {cfg.record_every}")
    rule(
        cfg.n_subjects >= cfg.subjects_needed(),
        "n_subjects",
        f"vocabulary too small: the requested points need {cfg.subjects_needed()} distinct subjects "
        "(one per training point plus the test subject), got n_subjects="
        f"{cfg.n_subjects}",
    )
    rule(
        cfg.n_answers >= cfg.answers_needed(),
        "n_answers",
        f"vocabulary too small: the requested points need {cfg.answers_needed()} distinct answers "
        "(one per C, C+S and S point, two per augmented point, plus c* and a*), got n_answers="
        f"{cfg.n_answers}",
    )


def resolve_config(config: "Config | Mapping[str, Any] | None") -> Config:
    """Accept a Config, a mapping of overrides, or None (defaults)."""
    if isinstance(config, Config):
        return config
    return Config.from_mapping(config)


def read_json_file(path, field: str):
    """Parse a JSON file; a missing or malformed file raises :class:`ConfigError` naming ``field`` (the CLI
    argument that gave the path)."""
    try:
        text = pathlib.Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            field, f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
