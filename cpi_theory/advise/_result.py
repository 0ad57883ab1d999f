"""The advisor's answer: :class:`Advice` and one :class:`Mitigation` per mitigation (no JAX here)."""

import dataclasses
import json
import math

MITIGATIONS = ("filter_cs", "augment", "lr_v_ratio", "add_s")
DOSE_MEANING = {
    "filter_cs": "share of the C+S points dropped (the other points kept)",
    "augment": "share of the C+S points replaced by counterfactual-augmented points (total kept)",
    "lr_v_ratio": "lr_v / lr_kq to finetune with (0: attention-only finetuning)",
    "add_s": "S share of the training points (total kept; C and C+S scaled down together)",
}


@dataclasses.dataclass(frozen=True)
class Mitigation:
    """One mitigation's answer. ``status``: "already met" (the base meets the target: dose = base dose),
    "met" (the smallest dose found by root finding), "not reachable" (no dose in ``dose_range`` meets it:
    ``dose`` is None and ``best_dose`` / ``at_horizon`` the best the grid found) or "not applicable"."""

    name: str
    dose_meaning: str
    status: str
    dose: float | None
    base_dose: float
    dose_range: tuple[float, float] | None
    met: bool
    at_horizon: float | None  # M_C(T) re-simulated at ``dose`` (at ``best_dose`` when not reachable)
    checked_by_simulation: bool
    memory_recall: float | None  # memory_recall(T) at that dose
    memory_cost: float | None  # base memory_recall(T) - memory_recall(T) at that dose
    best_dose: float | None
    dose_points: float | None  # points the dose drops / replaces / makes S (None for lr_v_ratio)
    note: str


@dataclasses.dataclass(frozen=True)
class Advice:
    """The advisor's answer (see :func:`cpi_theory.advise.advise`); :meth:`to_json` is the CLI's ``--json``."""

    inputs: dict
    shape: str
    start: float
    peak: float
    peak_step: int
    at_horizon: float
    target: float
    target_met: bool
    limit: dict
    memory: dict
    mitigations: tuple[Mitigation, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        return _finite(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def mitigation(self, name: str) -> Mitigation:
        return next(m for m in self.mitigations if m.name == name)


def _finite(x):
    """JSON has no NaN: non-finite numbers become None (tuples become lists)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
