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
from ._rules import CLASS_COUNT_KEYS as _CLASS_COUNT_KEYS
from ._rules import RULES, answers_needed, subjects_needed


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
        return subjects_needed(dataclasses.asdict(self))

    def answers_needed(self) -> int | float:
        """Distinct answers: one per C/C+S/S point, two per augmented point (context and memory), c* and a*."""
        return answers_needed(dataclasses.asdict(self))

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


# The engines count steps in int32 (the step of a record, the step a run diverged at).
MAX_STEPS = 2**31 - 1


def _check_rules(cfg: Config) -> None:
    """Config's checks: the one-run case of the rule table (:data:`cpi_theory.config.RULES`)."""
    values = dataclasses.asdict(cfg)
    for rule in RULES:
        if not rule.holds(values):
            raise ConfigError(rule.key, rule.message(values))
    # Not per run (ToyParams does not hold them): the length of the run and of its records.
    if cfg.steps < 0:
        raise ConfigError("steps", f"must be >= 0, got {cfg.steps}")
    if cfg.steps > MAX_STEPS:
        raise ConfigError(
            "steps", f"must be <= {MAX_STEPS} (the loop counts steps in int32), got {cfg.steps}"
        )
    if cfg.record_every < 1:
        raise ConfigError("record_every", f"must be >= 1, got {cfg.record_every}")


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
