"""What a sweep runs: a validated specification and its table of runs.

A spec is a mapping (JSON, TOML or Python)::

    {"base": {config overrides},
     "grid": {"key": [values, ...], ...},                  # Cartesian product, one dimension per key
     "random": {"key": {"uniform": [lo, hi]} | {"log_uniform": [lo, hi]} | {"choice": [v, ...]}},
     "n_runs": N, "seed": 0,                              # N random draws (a ``run`` dimension)
     "trajectory_every": k, "trajectory_metrics": [...]}  # what trajectories the results keep

Grid and random combine: every grid point is crossed with the same N random draws. The toy model is
deterministic, so a seed only drives the sampling of configurations; ``seed`` may also be a grid key
(one independent set of N draws per seed value). Every run is validated against :class:`Config`'s rules
before any work starts (on whole columns of values, never one Config per run), so a bad value or an
incompatible combination fails at once, naming the key. A spec with nothing to sweep is refused.
"""

import dataclasses
import json
import math
import pathlib
import tomllib
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError
from ..config._config import Config, read_json_file
from ..config._params import PARAM_KEYS, ToyParams
from ..config._rules import CLASS_COUNT_KEYS, RULES, Rule
from ..simulation._registry import PER_CLASS_PREFIX as PER_CLASS_PREFIX
from ..simulation._registry import TRAJECTORY_METRICS as TRAJECTORY_METRICS
from ..simulation._registry import get_engine

SPEC_KEYS = ("base", "grid", "random", "n_runs", "seed", "trajectory_every", "trajectory_metrics")
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")
DEFAULT_TRAJECTORY_METRICS = ("context_reliance",)
# Every run of a sweep shares one trajectory length: these keys fix the compiled scan lengths and the
# ``step`` axis of the results, so they belong in ``base``.
FIXED_KEYS = ("steps", "record_every")
RUN_DIM = "run"
SEED_KEY = "seed"
_CONFIG_KEYS = frozenset(Config.keys())

_INT_KEYS = tuple(
    f.name for f in dataclasses.fields(Config) if f.type is int or f.type == "int"
)  # n_answers, n_subjects, steps, record_every


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
        if not grid and not random:
            raise ConfigError(
                "grid",
                "the spec sweeps nothing (no grid and no random keys): give at least one key a list of "
                "values, or run the one configuration with `cpi-theory simulate`",
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
    return key in _INT_KEYS or (key in CLASS_COUNT_KEYS and all(_is_int(v) for v in arg))


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


# Integer coordinates are stored as int32 (netCDF3 has no int64); larger ones as float64, exact to 2**53.
_INT32 = np.iinfo(np.int32)
_EXACT_FLOAT = 2**53


def _coord_values(key: str, values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu" or all(_is_int(v) or isinstance(v, np.integer) for v in values.ravel()):
        as_int = np.asarray(values.tolist(), dtype=object)
        if all(_INT32.min <= int(v) <= _INT32.max for v in as_int.ravel()):
            return values.astype(np.int32)
        if not all(abs(int(v)) <= _EXACT_FLOAT for v in as_int.ravel()):
            raise ConfigError(
                key, f"integer values beyond 2**53 cannot be stored exactly, got {values.max()}"
            )
        return values.astype(np.float64)
    return values.astype(np.float64)


class _LazyConfigs(Sequence):
    """``table.configs[i]``: run i's Config, built when asked for (a sweep never holds one per run)."""

    def __init__(self, table: "RunTable"):
        self._table = table

    def __len__(self) -> int:
        return self._table.n_total

    def __getitem__(self, run):
        if isinstance(run, slice):
            return [self._table.config(i) for i in range(*run.indices(len(self)))]
        run = int(run) + (len(self) if run < 0 else 0)
        if not 0 <= run < len(self):
            raise IndexError(f"run index out of range (the sweep has {len(self)} runs)")
        return self._table.config(run)


@dataclasses.dataclass(frozen=True)
class RunTable:
    """Every run of a sweep, in C order over :attr:`SweepSpec.dims`, without building them one by one.

    Run i's swept values follow from i: a grid key's from i's position on its dimension, a random key's from
    the draws (``draws[seed][key]``, ``n_runs`` values). ``config(i)`` builds run i's Config, ``values(key,
    coords)`` any key's values for many runs at once (the vectorized validation and the chunk planning use
    it); ``coords`` maps each swept key to ``(dims, values)`` for the result dataset (grid keys on their own
    dimension; random keys on ``run``, or ``(seed, run)``).
    """

    spec: SweepSpec
    engine: str
    draws: dict[int, dict[str, np.ndarray]]
    dims: tuple[tuple[str, int], ...]
    coords: dict[str, tuple[tuple[str, ...], np.ndarray]]
    _float_columns: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(size for _, size in self.dims)

    @property
    def n_total(self) -> int:
        return math.prod(self.shape)

    @property
    def configs(self) -> Sequence[Config]:
        return _LazyConfigs(self)

    # -- where each key lives -----------------------------------------------------------------------------
    def axes_of(self, key: str) -> tuple[int, ...]:
        """Positions in :attr:`dims` that ``key``'s value depends on (``()``: the base value)."""
        grid_keys = [k for k, _ in self.spec.grid]
        if key in grid_keys:
            return (grid_keys.index(key),)
        if key in dict(self.spec.random):
            run_axis = len(grid_keys)
            return (grid_keys.index(SEED_KEY), run_axis) if SEED_KEY in grid_keys else (run_axis,)
        return ()

    def values(self, key: str, coords: Mapping[int, np.ndarray]) -> np.ndarray | np.float64:
        """float64 values of ``key`` at the runs whose positions on its axes are ``coords`` (axis -> index
        array); a base key gives its one value (broadcasts)."""
        axes = self.axes_of(key)
        if not axes:
            return np.float64(getattr(self.spec.base, key))
        column = self._float_column(key)
        if key in dict(self.spec.grid):
            return column[coords[axes[0]]]
        if len(axes) == 2:  # seed is a grid key: one set of draws per seed
            return column[coords[axes[0]], coords[axes[1]]]
        return column[0, coords[axes[0]]]

    def _float_column(self, key: str) -> np.ndarray:
        """A grid key's values, or a random key's draws (seeds x n_runs), as float64 (kept once made)."""
        if key not in self._float_columns:
            if key in dict(self.spec.grid):
                column = np.asarray(dict(self.spec.grid)[key], dtype=np.float64)
            else:
                seeds = dict(self.spec.grid).get(SEED_KEY, (self.spec.seed,))
                column = np.stack([self.draws[seed][key] for seed in seeds]).astype(np.float64)
            self._float_columns[key] = column
        return self._float_columns[key]

    # -- one run ------------------------------------------------------------------------------------------
    def overrides(self, run: int) -> dict[str, Any]:
        """Run ``run``'s swept values as Python numbers (the form a spec gives them in)."""
        index = np.unravel_index(run, self.shape) if self.dims else ()
        overrides: dict[str, Any] = {}
        seed = self.spec.seed
        for axis, (key, values) in enumerate(self.spec.grid):
            if key == SEED_KEY:
                seed = values[index[axis]]
            else:
                overrides[key] = values[index[axis]]
        if self.spec.random:
            for key, values in self.draws[seed].items():
                overrides[key] = values[index[-1]].item()
        return overrides

    def config(self, run: int) -> Config:
        """Run ``run``'s validated Config; a :class:`ConfigError` names the key and the run otherwise."""
        overrides = self.overrides(run)
        try:
            config = Config(**{**self.spec.base.to_dict(), **overrides})
        except ConfigError as err:
            raise ConfigError(err.key, f"{_rule(err)} (in the run with {_describe(overrides)})") from None
        values = config.to_dict()
        for rule in get_engine(self.engine).rules:
            if not rule.holds(values):
                raise ConfigError(
                    rule.key, f"{rule.message(values)} (in the run with {_describe(overrides)})"
                )
        return config

    def params(self, runs: np.ndarray) -> ToyParams:
        """The parameters of the global runs ``runs`` as float64 columns (no Python object per run)."""
        runs = np.asarray(runs, dtype=np.int64)
        coords = dict(enumerate(np.unravel_index(runs, self.shape))) if self.shape else {}
        columns = {key: self.values(key, coords) for key in PARAM_KEYS if key in _CONFIG_KEYS}
        params = ToyParams.from_columns(columns, validate=False)  # context_bias: 0, as in SPEC.md
        return params.map(lambda x: np.broadcast_to(np.asarray(x, dtype=np.float64), runs.shape))


def build_run_table(spec: SweepSpec, engine: str = "full") -> RunTable:
    """The runs of ``spec``, validated: raises :class:`ConfigError` naming the key of the first bad run.

    No Config is built per run: the rules are checked on whole columns of values (:data:`RULES`), each
    over the grid of only the dimensions its keys live on, and the first run that breaks one is built as a
    Config, which raises the error Config itself gives. A 10^8-run grid validates in seconds.
    """
    seeds = dict(spec.grid).get(SEED_KEY, (spec.seed,))
    draws = {seed: draw_random(spec, seed) for seed in seeds}
    coords: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for key, values in spec.grid:
        coords[key] = ((key,), _coord_values(key, values))
    for key, _ in spec.random:
        if SEED_KEY in dict(spec.grid):
            coords[key] = ((SEED_KEY, RUN_DIM), _coord_values(key, np.stack([draws[s][key] for s in seeds])))
        else:
            coords[key] = ((RUN_DIM,), _coord_values(key, draws[spec.seed][key]))
    table = RunTable(spec=spec, engine=engine, draws=draws, dims=spec.dims, coords=coords)
    bad_run = first_invalid_run(table)
    if bad_run is not None:
        table.config(bad_run)  # raises the ConfigError Config gives for this run
        raise AssertionError(f"run {bad_run} breaks a sweep rule that Config accepts: the rules disagree")
    return table


# -- the rules on columns ----------------------------------------------------------------------------------
# The one rule table (cpi_theory.config.RULES, which Config checks run by run) and the engine's own rules,
# evaluated on float64 columns. tests/test_sweep.py checks, run by run, that they accept exactly the runs
# Config (and the engine) accept.
def _rules(table: "RunTable") -> tuple[Rule, ...]:
    return (*RULES, *get_engine(table.engine).rules)


# Runs checked at once: bounds the memory of validation and planning (a few float64 columns of this length).
BLOCK = 1 << 20


def grid_blocks(table: RunTable, axes: tuple[int, ...]):
    """The grid over the dimensions ``axes`` of ``table`` in C order, in blocks: ``(flat, coords)`` with
    ``coords`` mapping each axis to its index array."""
    shape = tuple(table.shape[a] for a in axes)
    size = math.prod(shape)
    for start in range(0, size, BLOCK):
        flat = np.arange(start, min(start + BLOCK, size), dtype=np.int64)
        index = np.unravel_index(flat, shape) if axes else ()
        yield flat, dict(zip(axes, index, strict=True))


def _first_breaking(table: RunTable, rule: Rule) -> int | None:
    """The first run (C order) that breaks ``rule``; it is evaluated over the dimensions of its keys only."""
    keys = rule.reads
    axes = tuple(sorted({a for key in keys for a in table.axes_of(key)}))
    for flat, coords in grid_blocks(table, axes):
        ok = np.broadcast_to(rule.holds({key: table.values(key, coords) for key in keys}), flat.shape)
        if not ok.all():
            first = int(np.argmin(ok))
            # The earliest run with these coordinates: every other dimension at index 0.
            index = [0] * len(table.shape)
            for axis, positions in coords.items():
                index[axis] = int(positions[first])
            return int(np.ravel_multi_index(index, table.shape)) if table.shape else 0
    return None


def valid_runs(table: RunTable, runs: np.ndarray) -> np.ndarray:
    """Whether each of the global runs ``runs`` passes every rule (what Config would say, run by run)."""
    index = np.unravel_index(np.asarray(runs, dtype=np.int64), table.shape)
    coords = dict(enumerate(index))
    ok = np.ones(np.shape(runs), dtype=bool)
    for rule in _rules(table):
        ok &= np.broadcast_to(rule.holds({key: table.values(key, coords) for key in rule.reads}), ok.shape)
    return ok


def first_invalid_run(table: RunTable) -> int | None:
    """The first run that Config (or the engine's need for integer class counts) would refuse, or None."""
    firsts = [_first_breaking(table, rule) for rule in _rules(table)]
    firsts = [run for run in firsts if run is not None]
    return min(firsts) if firsts else None


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
