"""What a sweep runs: a validated specification and its table of runs.

A spec is a mapping (JSON, TOML or Python)::

    {"base": {config overrides},
     "grid": {"key": [values, ...], ...},                  # Cartesian product, one dimension per key
     "random": {"key": {"uniform": [lo, hi]} | {"log_uniform": [lo, hi]} | {"choice": [v, ...]}},
     "n_runs": N, "seed": 0,                              # N random draws (a ``run`` dimension)
     "trajectory_every": k, "trajectory_metrics": [...]}  # what trajectories the results keep

Grid and random combine: every grid point is crossed with the same N random draws. The toy model is
deterministic, so a seed only drives the sampling of configurations; ``seed`` may also be a grid key
(one independent set of N draws per seed value). Every run is validated by :class:`Config` before any work
starts, so a bad value or an incompatible combination fails at once, naming the key.
"""

import dataclasses
import itertools
import json
import math
import pathlib
import tomllib
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ConfigError
from ..config._config import Config, read_json_file
from ..engine._trajectory import CLASS_METRICS, PROBE_METRICS

SPEC_KEYS = ("base", "grid", "random", "n_runs", "seed", "trajectory_every", "trajectory_metrics")
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")
# Trajectory variables a sweep can keep: the probe metrics, and per-class metrics (with a data_class axis).
PER_CLASS_PREFIX = "per_class_"
TRAJECTORY_METRICS = PROBE_METRICS + tuple(PER_CLASS_PREFIX + m for m in CLASS_METRICS)
DEFAULT_TRAJECTORY_METRICS = ("context_reliance",)
# Every run of a sweep shares one trajectory length: these keys fix the compiled scan lengths and the
# ``step`` axis of the results, so they belong in ``base``.
FIXED_KEYS = ("steps", "record_every")
RUN_DIM = "run"
SEED_KEY = "seed"

_INT_KEYS = tuple(
    f.name for f in dataclasses.fields(Config) if f.type is int or f.type == "int"
)  # n_answers, n_subjects, steps, record_every
_COUNT_KEYS = ("n_context_critical", "n_non_context_critical", "n_subject_only", "n_counterfactual_augmented")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep specification; build it with :meth:`from_mapping` or :meth:`from_file`."""

    base: Config
    grid: tuple[tuple[str, tuple], ...] = ()
    random: tuple[tuple[str, tuple[str, tuple]], ...] = ()
    n_runs: int = 0
    seed: int = 0
    trajectory_every: int | None = None
    trajectory_metrics: tuple[str, ...] = DEFAULT_TRAJECTORY_METRICS

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "SweepSpec":
        if not isinstance(data, Mapping):
            raise ConfigError("spec", f"must be a mapping (JSON object), got {type(data).__name__}")
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise ConfigError(unknown[0], f"unknown sweep spec key (valid keys: {', '.join(SPEC_KEYS)})")
        base_overrides = data.get("base") or {}
        if not isinstance(base_overrides, Mapping):
            raise ConfigError("base", "must be a mapping of config overrides")
        base = Config.from_mapping(base_overrides)
        grid = _parse_grid(data.get("grid") or {})
        random = _parse_random(data.get("random") or {})
        both = sorted({k for k, _ in grid} & {k for k, _ in random})
        if both:
            raise ConfigError(both[0], "appears in both grid and random; sweep each key one way")
        n_runs = data.get("n_runs", 0)
        if random:
            if not _is_int(n_runs) or n_runs < 1:
                raise ConfigError("n_runs", f"random specs need n_runs >= 1 (an integer), got {n_runs!r}")
        elif n_runs not in (0, None):
            raise ConfigError("n_runs", "only random specs take n_runs (the model is deterministic)")
        seed = data.get("seed", 0)
        if not _is_int(seed) or seed < 0:
            raise ConfigError("seed", f"must be a non-negative integer, got {seed!r}")
        if any(k == SEED_KEY for k, _ in grid) and not random:
            raise ConfigError(SEED_KEY, "a grid over seeds needs random keys: seeds only drive random draws")
        trajectory_every = data.get("trajectory_every")
        if trajectory_every is not None:
            if not _is_int(trajectory_every) or trajectory_every < 0:
                raise ConfigError(
                    "trajectory_every",
                    f"must be an integer >= 0 (0: no trajectories), got {trajectory_every!r}",
                )
            if trajectory_every and trajectory_every % base.record_every:
                raise ConfigError(
                    "trajectory_every",
                    f"must be a multiple of record_every={base.record_every}, got {trajectory_every}",
                )
        metrics = data.get("trajectory_metrics", DEFAULT_TRAJECTORY_METRICS)
        if isinstance(metrics, str) or not isinstance(metrics, list | tuple) or not metrics:
            raise ConfigError("trajectory_metrics", f"must be a non-empty list of {TRAJECTORY_METRICS}")
        for name in metrics:
            if name not in TRAJECTORY_METRICS:
                raise ConfigError(
                    "trajectory_metrics", f"unknown metric {name!r} (valid: {TRAJECTORY_METRICS})"
                )
        return cls(
            base=base,
            grid=grid,
            random=random,
            n_runs=int(n_runs or 0),
            seed=int(seed),
            trajectory_every=trajectory_every,
            trajectory_metrics=tuple(dict.fromkeys(metrics)),
        )

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> "SweepSpec":
        """A ``.json`` or ``.toml`` spec file."""
        if pathlib.Path(path).suffix.lower() != ".toml":
            return cls.from_mapping(read_json_file(path, "SPEC"))
        try:
            text = pathlib.Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError("SPEC", f"file not found: {path}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("SPEC", f"{path} is not valid TOML ({err})") from None
        return cls.from_mapping(data)

    def to_mapping(self) -> dict[str, Any]:
        """The canonical mapping of this spec (``from_mapping(to_mapping())`` is the same spec)."""
        base = {k: v for k, v in self.base.to_dict().items() if v != getattr(Config(), k)}
        out: dict[str, Any] = {"base": base}
        if self.grid:
            out["grid"] = {k: list(v) for k, v in self.grid}
        if self.random:
            out["random"] = {k: {dist: list(arg)} for k, (dist, arg) in self.random}
            out["n_runs"] = self.n_runs
        out["seed"] = self.seed
        out["trajectory_every"] = self.trajectory_every
        out["trajectory_metrics"] = list(self.trajectory_metrics)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_mapping(), sort_keys=True)

    # -- the runs -----------------------------------------------------------------------------------------
    @property
    def swept_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.random)

    @property
    def dims(self) -> tuple[tuple[str, int], ...]:
        """Result dimensions (name, size): one per grid key, then ``run`` for random specs."""
        dims = tuple((k, len(v)) for k, v in self.grid)
        if self.random:
            dims += ((RUN_DIM, self.n_runs),)
        return dims

    @property
    def n_total(self) -> int:
        return math.prod(size for _, size in self.dims)

    @property
    def stored_every(self) -> int:
        """Steps between stored trajectory points (0: none stored)."""
        return self.base.record_every if self.trajectory_every is None else self.trajectory_every


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sweepable(key: str) -> None:
    if key == SEED_KEY:
        return
    if key not in Config.keys():
        raise ConfigError(key, f"unknown config key (valid keys: {', '.join(Config.keys())}, seed)")
    if key in FIXED_KEYS:
        raise ConfigError(
            key, "must be the same for every run of a sweep (it fixes the trajectory length): set it in base"
        )


def _check_number(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, f"sweep values must be finite numbers, got {value!r}")


def _parse_grid(grid) -> tuple[tuple[str, tuple], ...]:
    if not isinstance(grid, Mapping):
        raise ConfigError("grid", "must be a mapping of key -> list of values")
    out = []
    for key, values in grid.items():
        _check_sweepable(key)
        if isinstance(values, str) or not isinstance(values, list | tuple):
            raise ConfigError(key, f"grid values must be a list, got {values!r}")
        if not values:
            raise ConfigError(key, "empty list of grid values")
        for value in values:
            _check_number(key, value)
        if key == SEED_KEY and not all(_is_int(v) and v >= 0 for v in values):
            raise ConfigError(key, f"seeds must be non-negative integers, got {list(values)}")
        if len(set(values)) != len(values):
            raise ConfigError(key, f"duplicate grid values in {list(values)}")
        out.append((key, tuple(values)))
    return tuple(out)


def _parse_random(random) -> tuple[tuple[str, tuple[str, tuple]], ...]:
    if not isinstance(random, Mapping):
        raise ConfigError("random", "must be a mapping of key -> {distribution: arguments}")
    out = []
    for key, dist in random.items():
        _check_sweepable(key)
        if key == SEED_KEY:
            raise ConfigError(key, "seed cannot be drawn at random; put it in grid or at the top level")
        if not isinstance(dist, Mapping) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise ConfigError(
                key,
                f"must be one of {{'uniform': [lo, hi]}}, {{'log_uniform': [lo, hi]}}, "
                f"{{'choice': [...]}}; got {dist!r}",
            )
        ((name, arg),) = dist.items()
        if isinstance(arg, str) or not isinstance(arg, list | tuple) or not arg:
            raise ConfigError(key, f"{name} needs a non-empty list, got {arg!r}")
        for value in arg:
            _check_number(key, value)
        if name in ("uniform", "log_uniform"):
            if len(arg) != 2 or arg[0] > arg[1]:
                raise ConfigError(key, f"{name} needs [lo, hi] with lo <= hi, got {list(arg)}")
            if name == "log_uniform" and arg[0] <= 0:
                raise ConfigError(key, f"log_uniform needs 0 < lo, got {list(arg)}")
        out.append((key, (name, tuple(arg))))
    return tuple(out)


def _integer_draws(key: str, arg) -> bool:
    """Integer keys always draw integers; class counts do where both bounds are integers."""
    return key in _INT_KEYS or (key in _COUNT_KEYS and all(_is_int(v) for v in arg))


def draw_random(spec: SweepSpec, seed: int) -> dict[str, np.ndarray]:
    """The N random draws of every random key for one seed.

    Each key draws from its own stream ``np.random.default_rng([seed, crc32(key)])``: adding or removing a
    key leaves the other keys' draws unchanged, and the same spec and seed give the same draws anywhere.
    """
    draws = {}
    for key, (name, arg) in spec.random:
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        integer = _integer_draws(key, arg)
        if name == "choice":
            values = np.asarray(arg)[rng.integers(0, len(arg), size=spec.n_runs)]
        elif name == "uniform":
            lo, hi = arg
            values = (
                rng.integers(lo, hi + 1, size=spec.n_runs) if integer else rng.uniform(lo, hi, spec.n_runs)
            )
        else:
            values = np.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]), spec.n_runs))
            if integer:
                values = np.clip(np.rint(values), arg[0], arg[1])
        draws[key] = values.astype(np.int64) if integer else values.astype(np.float64)
    return draws


@dataclasses.dataclass(frozen=True)
class RunTable:
    """Every run of a sweep, in C order over :attr:`SweepSpec.dims`.

    ``configs[i]`` is run i's validated Config; ``coords`` maps each swept key to ``(dims, values)`` for the
    result dataset (grid keys on their own dimension; random keys on ``run``, or ``(seed, run)``).
    """

    configs: tuple[Config, ...]
    dims: tuple[tuple[str, int], ...]
    coords: dict[str, tuple[tuple[str, ...], np.ndarray]]


def _coord_values(key: str, values) -> np.ndarray:
    values = list(values)
    if all(_is_int(v) or (isinstance(v, np.integer)) for v in values):
        return np.asarray(values, dtype=np.int32)  # netCDF3 has no int64; counts and sizes fit
    return np.asarray(values, dtype=np.float64)


def build_run_table(spec: SweepSpec, engine: str = "full") -> RunTable:
    """Expand the spec into validated runs; raises :class:`ConfigError` naming the key of the first bad run."""
    grid_keys = [k for k, _ in spec.grid]
    seeds = dict(spec.grid).get(SEED_KEY, (spec.seed,))
    draws = {seed: draw_random(spec, seed) for seed in seeds}
    configs = []
    base = spec.base.to_dict()
    grid_axes = [range(len(v)) for _, v in spec.grid] + ([range(spec.n_runs)] if spec.random else [])
    for index in itertools.product(*grid_axes):
        overrides = {}
        seed = spec.seed
        for axis, key in enumerate(grid_keys):
            value = spec.grid[axis][1][index[axis]]
            if key == SEED_KEY:
                seed = value
            else:
                overrides[key] = value
        if spec.random:
            run = index[-1]
            for key, values in draws[seed].items():
                overrides[key] = values[run].item()
        try:
            config = Config(**{**base, **overrides})
        except ConfigError as err:
            raise ConfigError(err.key, f"{_rule(err)} (in the run with {_describe(overrides)})") from None
        if engine == "full" and not config.has_integer_class_counts():
            bad = next(k for k in _COUNT_KEYS if not isinstance(getattr(config, k), int))
            raise ConfigError(
                bad,
                f"the full engine needs integer class counts, got {getattr(config, bad)!r} "
                f"(in the run with {_describe(overrides)}); real class sizes need --engine reduced",
            )
        configs.append(config)

    coords: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for key, values in spec.grid:
        coords[key] = ((key,), _coord_values(key, values))
    for key, _ in spec.random:
        if SEED_KEY in grid_keys:
            stacked = np.stack([draws[s][key] for s in seeds])
            coords[key] = (
                (SEED_KEY, RUN_DIM),
                stacked.astype(np.int32) if stacked.dtype.kind == "i" else stacked,
            )
        else:
            values = draws[spec.seed][key]
            coords[key] = ((RUN_DIM,), values.astype(np.int32) if values.dtype.kind == "i" else values)
    return RunTable(configs=tuple(configs), dims=spec.dims, coords=coords)


def _rule(err: ConfigError) -> str:
    text = str(err)
    prefix = f"{err.key}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _describe(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "the base config"


def sweep_spec(
    base: Mapping[str, Any] | None = None,
    grid: Mapping[str, list] | None = None,
    random: Mapping[str, Mapping[str, list]] | None = None,
    *,
    n_runs: int = 0,
    seed: int = 0,
    trajectory_every: int | None = None,
    trajectory_metrics=DEFAULT_TRAJECTORY_METRICS,
) -> SweepSpec:
    """Python form of a spec: ``sweep_spec(base={...}, grid={"lr_kq": [0.5, 1.0]})``."""
    data: dict[str, Any] = {"base": dict(base or {}), "grid": dict(grid or {}), "random": dict(random or {})}
    data.update(seed=seed, trajectory_every=trajectory_every, trajectory_metrics=list(trajectory_metrics))
    if n_runs:
        data["n_runs"] = n_runs
    return SweepSpec.from_mapping(data)
