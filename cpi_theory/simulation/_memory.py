"""Memory a run needs, estimated before anything is allocated, against the memory the machine has.

The estimates are upper bounds from the sizes that dominate: the d x d matrices of the full engine
(d = n_subjects + n_answers + 3, SPEC.md §1), the recorded metrics (one row per recorded step), and for a
sweep one chunk's runs, the random draws and the results. A run that cannot fit is refused with a
:class:`ConfigError` naming the key that makes it large, the estimate, the machine's memory and the way
out; a run that fits is never refused. ``tests/test_hardening.py`` checks the bounds against what XLA
allocates and what a run's peak resident memory is.

The machine's memory is ``MemAvailable`` of ``/proc/meminfo`` (physical memory where that is unreadable);
on an accelerator, what a device holds is checked against the smallest device's memory as well. The
environment variable ``CPI_THEORY_MEMORY_BYTES`` overrides both (tests inject a limit that does not depend
on the machine they run on).
"""

import dataclasses
import os

from .._errors import ConfigError
from ..config._config import Config
from ._registry import FLOAT_BYTES, RECORD_FLOATS, get_engine

MEMORY_ENV = "CPI_THEORY_MEMORY_BYTES"
# Copies of the records one simulate holds at its peak: on the device, on the host, and the trajectory's
# JSON form (Python floats in lists, then text); measured: 14 times the float64 arrays.
SIMULATE_RECORD_COPIES = 16


def machine_memory_bytes() -> int:
    """Bytes this process may use: ``$CPI_THEORY_MEMORY_BYTES``, else MemAvailable, else physical memory."""
    override = _override()
    if override is not None:
        return override
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory_bytes() -> int | None:
    """The smallest accelerator's memory (None on CPU, where devices share the machine's memory)."""
    override = _override()
    if override is not None:
        return override
    import jax

    limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
    limits = [int(x) for x in limits if x]
    return min(limits) if limits else None


def _override() -> int | None:
    value = os.environ.get(MEMORY_ENV)
    if not value:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise ConfigError(MEMORY_ENV, f"must be a number of bytes, got {value!r}") from None


def format_bytes(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def model_dim(n_subjects: int | float, n_answers: int | float) -> int:
    """d = K_S + K_A + 3 (SPEC.md §1)."""
    return max(int(n_subjects), 0) + max(int(n_answers), 0) + 3


def run_state_bytes(n_subjects: int | float, n_answers: int | float, engine: str) -> int:
    """Memory of one run's state and temporaries (not its records): the registered engine's fact."""
    return get_engine(engine).state_bytes(max(int(n_subjects), 0), max(int(n_answers), 0))


def n_records(steps: int, record_every: int) -> int:
    """Recorded steps: 0, record_every, ... and the last step (one more, as an upper bound)."""
    return max(steps, 0) // max(record_every, 1) + 2


def records_bytes(steps: int, record_every: int) -> int:
    """The recorded metrics of one run, as float64 arrays."""
    return n_records(steps, record_every) * RECORD_FLOATS * FLOAT_BYTES


@dataclasses.dataclass(frozen=True)
class Need:
    """One part of an estimate: its bytes, the key that makes it large, how to make it smaller, and whether
    it lives on the devices (on an accelerator: checked against one device's memory too)."""

    bytes: int
    key: str
    way_out: str
    per_device: int = 0  # the part of ``bytes`` one device holds


def refuse_unless_fits(what: str, needs: list[Need], available: int | None = None) -> None:
    """Raise :class:`ConfigError` (naming the key of the largest part) if the parts exceed ``available``
    (default: :func:`machine_memory_bytes`), or what one device holds exceeds its memory."""
    device = None if available is not None else device_memory_bytes()
    available = machine_memory_bytes() if available is None else available
    total = sum(need.bytes for need in needs)
    if total > available:
        largest = max(needs, key=lambda need: need.bytes)
        where, limit, amount = "this machine's", available, total
    else:
        on_device = sum(need.per_device for need in needs)
        if device is None or on_device <= device:
            return
        largest = max(needs, key=lambda need: need.per_device)
        where, limit, amount = "one device's", device, on_device
    raise ConfigError(
        largest.key,
        f"{what} needs about {format_bytes(amount)} of memory ({format_bytes(largest.bytes)} from "
        f"{largest.key}), more than {where} {format_bytes(limit)}; {largest.way_out}",
    )


def vocabulary_key(n_subjects: int | float, n_answers: int | float, prefix: str = "") -> str:
    return prefix + ("n_answers" if n_answers >= n_subjects else "n_subjects")


def simulate_needs(config: Config, engine: str) -> list[Need]:
    """What one :func:`simulate` holds at its peak."""
    state = run_state_bytes(config.n_subjects, config.n_answers, engine)
    records = records_bytes(config.steps, config.record_every)
    return [
        Need(
            state,
            vocabulary_key(config.n_subjects, config.n_answers),
            "the full engine holds d x d matrices (d = n_subjects + n_answers + 3): use a smaller vocabulary "
            "or --engine reduced (exact class dynamics, no d x d matrices)",
            per_device=state,
        ),
        Need(
            SIMULATE_RECORD_COPIES * records,
            "steps",
            f"every record_every-th of the {config.steps} steps is recorded: use a larger record_every "
            f"(now {config.record_every}) or fewer steps",
            per_device=records,
        ),
    ]


def check_simulate_memory(config: Config, engine: str, available: int | None = None) -> None:
    """Refuse a :func:`simulate` that cannot fit in memory, before anything is allocated."""
    refuse_unless_fits(f"simulate ({engine} engine)", simulate_needs(config, engine), available)
