"""cpi_theory: the exact theory of context-parametric inversion in a one-layer attention toy model.

Theory code runs in float64: call :func:`enable_float64` once before using the package (the CLI and the
tests do). See SPEC.md (shared/) for the model; every symbol there has one home here. Data flows one way:
config -> world -> pretrained state -> engine step -> recorded trajectory -> summary -> experiment data ->
figure. Subpackages, each with one face:

- :mod:`cpi_theory.config`: ``Config`` and the data-class vocabulary ``DataClass``;
- :mod:`cpi_theory.engine`: the engine interface, the one recorded loop, ``Trajectory`` and its summary;
- :mod:`cpi_theory.model` (SPEC §1-4): world, pretrained state, forward pass, metrics, the full engine;
- :mod:`cpi_theory.reduced` (SPEC §6): the sympy-derived reduced dynamics and their engine;
- :mod:`cpi_theory.simulation`: the engine registry and ``simulate``;
- :mod:`cpi_theory.paper` (SPEC §5 and beyond): lemmas, propositions, theorem, flow, peak, plateau, late-time law, boundary;
- :mod:`cpi_theory.phenomena` (SPEC §7), :mod:`cpi_theory.sweep`, :mod:`cpi_theory.figures`,
  :mod:`cpi_theory.cli`, and :mod:`cpi_theory.bridge` (real transformers).

The names below are the everyday ones; each subpackage's face has the rest.

Every name is imported on first use (PEP 562 ``__getattr__``), not with the package: ``import cpi_theory``
and ``import cpi_theory.cli`` load no JAX, so ``cpi-theory --help`` and refused arguments answer at once.
To export another name, add it to ``_EXPORTS`` with the submodule that defines it.
"""

import importlib
import sys
import types

# Name -> the submodule (relative to this package) that defines it; grouped by concern, in the order data
# flows.
_EXPORTS = {
    # Precision and errors.
    "ConfigError": "_errors",
    "DivergenceError": "_errors",
    "Float64Required": "_errors",
    "PrecisionLossError": "_errors",
    "enable_float64": "_precision",
    "require_float64": "_precision",
    "__version__": "_version",
    # Configuration and the data-class vocabulary.
    "DATA_CLASSES": "config",
    "Config": "config",
    "ClassSizes": "config",
    "DataClass": "config",
    "ToyParams": "config",
    "resolve_config": "config",
    # The engine interface, the recorded loop and the one result type.
    "Engine": "engine",
    "Recorded": "engine",
    "Summary": "engine",
    "Trajectory": "engine",
    "recorded_steps": "engine",
    "run_recorded": "engine",
    "summarize": "engine",
    "trajectory_from_records": "engine",
    # The model (SPEC §1-4) and the full engine.
    "ToyState": "model",
    "Vocabulary": "model",
    "World": "model",
    "build_world": "model",
    "context_reliance": "model",
    "forward": "model",
    "gd_step": "model",
    "metrics": "model",
    "pretrained_state": "model",
    "train": "model",
    "training_loss": "model",
    "value_logits": "model",
    # The reduced dynamics (SPEC §6).
    "reduced_initial_state": "reduced",
    "reduced_params": "reduced",
    "reduced_state_names": "reduced",
    "reduced_train": "reduced",
    # One run, or many (columns of ToyParams), through a named engine.
    "Batch": "simulation",
    "simulate": "simulation",
    "simulate_many": "simulation",
    "use_cpu_cores": "simulation",
    # The paper's results (SPEC §5) and what it left open.
    "check_assumptions": "paper",
    "eta_star": "paper",
    "flow_peak": "paper",
    "gradient_flow": "paper",
    "inversion_peak": "paper",
    "late_time_law": "paper",
    "lemma3_value_logits": "paper",
    "lemma4_margins": "paper",
    "lemma4_values": "paper",
    "phase_boundary": "paper",
    "plateau": "paper",
    "proposition2": "paper",
    "proposition3": "paper",
    "shared_direction_gradient": "paper",
    "theorem1": "paper",
    "value_rate_effect": "paper",
    # Sweeps and figures.
    "SweepResult": "sweep",
    "SweepSpec": "sweep",
    "run_sweep": "sweep",
    "sweep": "sweep",
    "sweep_spec": "sweep",
    "reproduce": "figures",
}
# The subpackages, reachable as attributes (``cpi_theory.paper``) without an explicit import. ``sweep`` is
# not among them: ``cpi_theory.sweep`` is the function (``_Package`` below keeps it so).
_SUBPACKAGES = (
    "config",
    "engine",
    "model",
    "reduced",
    "simulation",
    "paper",
    "phenomena",
    "figures",
    "bridge",
    "advise",
    "cli",
)

__all__ = list(_EXPORTS)


def _export(name: str):
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


class _Package(types.ModuleType):
    """This package's module type: ``sweep`` names both a subpackage and the function exported as
    ``cpi_theory.sweep``. Importing a subpackage binds it as an attribute of its parent, which would replace
    the function whenever ``cpi_theory.sweep`` is imported first; a property is looked up before the
    module's own attributes and ignores that binding, so ``cpi_theory.sweep`` stays the function."""

    @property
    def sweep(self):
        return _export("sweep")

    @sweep.setter
    def sweep(self, _subpackage) -> None:
        pass


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _EXPORTS:
        value = _export(name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))
