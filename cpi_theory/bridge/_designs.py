"""Round two (issue 22): the gate on the starting point, the pretraining regime calibrated to pass it, and
the three pre-registered designs V1 / V2 / V3 as data (figures/bridge/round2/PREREGISTRATION.md).

A *design* fixes the world (answers split into fact answers and context-only answers, a pool of stream
subjects for fresh C points), the pretraining regime (agreeing contexts, copying with label noise), the
model variants, and its *cells* (one recipe each) with their *arms* (the C+S treatments and the
frequency-matched controls). Every arm of one (model variant, seed) finetunes the same gated checkpoint.
"""

import dataclasses

from .._errors import ConfigError
from ._model import ModelConfig
from ._presets import SIZES, Size
from ._recipe import Recipe
from ._train import PretrainConfig
from ._world import FactWorldConfig

# The gate (issue 22): a checkpoint is used only inside the toy's regime.
GATE_RATIO = 2.0  # delta_M > GATE_RATIO * delta_C
GATE_LOW, GATE_HIGH = 0.1, 0.6  # GATE_LOW < M_C(0) < GATE_HIGH


def gate(start: dict) -> dict:
    """The gate on a checkpoint's measured start: delta_M > 2 delta_C and 0.1 < M_C(0) < 0.6.

    ``start`` holds ``delta_m``, ``delta_c`` and ``context_reliance`` (M_C(0)). Returns the numbers, the
    verdict ``passed`` and ``failed`` (the reasons, empty when it passes).
    """
    dm, dc, mc = (float(start[k]) for k in ("delta_m", "delta_c", "context_reliance"))
    failed = []
    if not dm > GATE_RATIO * dc:
        failed.append(f"delta_M {dm:.3f} <= 2 delta_C {GATE_RATIO * dc:.3f}")
    if not GATE_LOW < mc < GATE_HIGH:
        failed.append(f"M_C(0) {mc:.3f} outside ({GATE_LOW}, {GATE_HIGH})")
    return {"delta_m": dm, "delta_c": dc, "context_reliance": mc, "passed": not failed, "failed": failed}


def gate_line(result: dict) -> str:
    """One printable line: the gate's numbers and verdict."""
    verdict = "PASS" if result["passed"] else "FAIL (" + "; ".join(result["failed"]) + ")"
    return (
        f"gate: delta_M {result['delta_m']:.3f} > 2 x delta_C {result['delta_c']:.3f}? "
        f"0.1 < M_C(0) {result['context_reliance']:.3f} < 0.6? {verdict}"
    )


#: The round-two pretraining regime: agreeing contexts (C+S-format points are in distribution before
#: finetuning), copy examples on unknown subjects frequent enough that copying always emerges, their label
#: noise keeping delta_C near 0.1-0.2, and fact label noise setting delta_M near 0.65. Set by hand, not
#: calibrated: at ``tiny`` it passes the gate for 4 of 7 seeds (4 heads) and 4 of 11 (1 head), failing on
#: M_C(0) (figures/bridge/round2/gate.md); ``small`` and ``base`` were not measured.
ROUND2_REGIME = dict(copy_rate=0.25, copy_noise=0.75, agree_rate=0.2, fact_noise=0.3)


#: V3's pretraining regime (calibrated on the gate alone, before any V3 finetuning run:
#: figures/bridge/round2/v3_calibration/). V3's world memorizes 2,112 facts (V1's: 256); with ROUND2_REGIME it
#: failed the gate at 12 of 12 seeds (M_C(0) 0.87-0.99). Cleaner fact labels strengthen memory (delta_M
#: 0.6 -> 0.85), fewer agreeing contexts and noisier copy labels weaken copying on known subjects; at ``tiny``
#: 3 of the first 4 seeds pass. At ``small`` seed 0 fails (M_C(0) 0.85); ``base`` is not measured.
V3_REGIME = dict(agree_rate=0.05, fact_noise=0.1, copy_noise=0.85)


def round2_world(size: Size, **overrides) -> dict:
    """The world of ``size`` for round two: a third of the answers context-only, a stream-subject pool as
    large as the copy pool, the regime above; ``overrides`` last."""
    world = dict(size.world)
    n_answers = world["n_answers"]
    world.update(
        n_answers=n_answers + n_answers // 2,
        n_context_answers=n_answers // 2,
        n_stream_subjects=world["n_copy_subjects"],
        n_finetune=64 if size.name != "micro" else 16,
        **ROUND2_REGIME,
    )
    world.update(overrides)
    return world


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a cell: finetuning world overrides (mixture), fresh-C share, and whether it is a control."""

    name: str
    world: dict
    fresh_share: float = 0.0
    control: bool = False
    lr_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Cell:
    """One recipe of a design on one model variant, with its arms; ``lr_v_ratio`` is the toy's."""

    name: str
    model: str  # a key of Design.models
    recipe: Recipe
    arms: tuple[Arm, ...]
    lr_v_ratio: float = 0.0

    @property
    def controls(self) -> tuple[Arm, ...]:
        return tuple(a for a in self.arms if a.control)

    @property
    def treatments(self) -> tuple[Arm, ...]:
        return tuple(a for a in self.arms if not a.control)


@dataclasses.dataclass(frozen=True)
class Design:
    name: str
    size: str
    world: dict  # FactWorldConfig fields of the pretraining world (seed added per run)
    models: dict  # variant name -> ModelConfig overrides of the size's model
    pretrain: PretrainConfig
    cells: tuple[Cell, ...]
    n_seeds: int = 5  # the first n_seeds seeds (from 0 up) whose checkpoint passes the gate
    max_seed: int = 12  # seeds tried at most per model variant

    def world_config(self, seed: int, **overrides) -> FactWorldConfig:
        return FactWorldConfig(**{**self.world, **overrides}, seed=seed)

    def model_config(self, variant: str, world: FactWorldConfig, seed: int) -> ModelConfig:
        base = {**SIZES[self.size].model, **self.models[variant]}
        return ModelConfig(vocab_size=world.vocab_size, seq_len=world.seq_len, seed=seed, **base)

    def checkpoint_key(self, variant: str, seed: int) -> str:
        """A name for the pretrained checkpoint: equal for designs that share world, model and pretraining."""
        import hashlib
        import json

        blob = json.dumps(
            {"world": self.world, "model": self.models[variant], "size": self.size,
             "pretrain": dataclasses.asdict(self.pretrain)},
            sort_keys=True,
        )  # fmt: skip
        return f"{self.size}_{variant}_{hashlib.sha256(blob.encode()).hexdigest()[:10]}_s{seed}"


# Recipe pieces.
_QK_ONLY = dict(lr_vo=0.0, lr_mlp=0.0, lr_embed=0.0, lr_unembed=0.0, lr_norm=0.0)
_SLOW_VALUE = dict(lr_qk=1.0, lr_vo=0.03, lr_mlp=0.03, lr_embed=0.0, lr_unembed=0.0, lr_norm=0.0)

# Per-size budgets of the designs: V1 steps, V2 steps, V3 (fixed points, epochs); micro is for tests.
_BUDGET = {
    "micro": dict(v1_steps=60, v2_steps=40, v3_points=64, v3_epochs=3, v3_batch=16, n_measure=6),
    "tiny": dict(v1_steps=10_000, v2_steps=5_000, v3_points=4096, v3_epochs=3, v3_batch=128, n_measure=40),
    "small": dict(v1_steps=10_000, v2_steps=5_000, v3_points=4096, v3_epochs=3, v3_batch=128, n_measure=40),
    "base": dict(v1_steps=10_000, v2_steps=5_000, v3_points=4096, v3_epochs=3, v3_batch=128, n_measure=40),
}


def _v1(size: Size, budget: dict) -> Design:
    """V1, closest to the toy: QK-only full-batch GD on C / C+S points with split answers."""
    arms = (
        Arm("C+S 0.5", dict(cs_fraction=0.5)),
        Arm("control: C+S -> C (matched)", dict(cs_fraction=0.5, cs_as_c=True), control=True),
    )
    cells = tuple(
        Cell(
            f"{variant}, GD lr {lr:g}",
            variant,
            Recipe(
                steps=budget["v1_steps"],
                optimizer="gd",
                lr=float(lr),
                n_measure=budget["n_measure"],
                **_QK_ONLY,
            ),
            arms,
            lr_v_ratio=0.0,
        )
        for variant in ("h4", "h1")
        for lr in (1, 3)
    )
    return Design(
        "V1",
        size.name,
        round2_world(size),
        {"h4": {}, "h1": {"n_heads": 1}},
        size.pretrain,
        cells,
    )


def _v2(size: Size, budget: dict) -> Design:
    """V2, all parameters with a slow value side, fresh C points beside a fixed C+S set."""
    arms = (
        Arm("C+S 0.5", dict(cs_fraction=1.0), fresh_share=0.5),
        Arm("C+S 0.75", dict(cs_fraction=1.0), fresh_share=0.25),
        Arm("control: C+S 0 (fresh C only)", dict(cs_fraction=1.0), fresh_share=1.0, control=True),
    )
    batch = 64 if size.name != "micro" else 16
    cells = (
        Cell(
            "Adam 1e-3",
            "h4",
            Recipe(
                steps=budget["v2_steps"],
                optimizer="adam",
                lr=1e-3,
                batch_size=batch,
                n_measure=budget["n_measure"],
                **_SLOW_VALUE,
            ),
            arms,
            lr_v_ratio=0.03,
        ),
        Cell(
            "GD 0.3",
            "h4",
            Recipe(
                steps=budget["v2_steps"],
                optimizer="gd",
                lr=0.3,
                batch_size=batch,
                n_measure=budget["n_measure"],
                **_SLOW_VALUE,
            ),
            arms,
            lr_v_ratio=0.03,
        ),
    )
    return Design("V2", size.name, round2_world(size), {"h4": {}}, size.pretrain, cells)


def _v3(size: Size, budget: dict) -> Design:
    """V3, the LLM recipe: many fixed points, a few epochs of minibatch Adam, warmup then cosine; LoRA on
    q/k/v/o against full finetuning."""
    n_points = budget["v3_points"]
    n_cs = n_points // 2
    world = round2_world(
        size,
        n_finetune=n_points,
        n_known_facts=size.world["n_probe"] + n_cs,
        **V3_REGIME,
    )
    steps = budget["v3_epochs"] * n_points // budget["v3_batch"]
    arms = (
        Arm("C+S 0.5", dict(cs_fraction=0.5)),
        Arm("control: C only (matched)", dict(cs_fraction=0.5, cs_as_c=True), control=True),
        Arm("control: fresh C", dict(cs_fraction=0.5), fresh_share=1.0, control=True),
    )
    common = dict(
        steps=steps,
        optimizer="adam",
        lr=1e-4,
        batch_size=budget["v3_batch"],
        warmup=max(steps // 10, 1),
        decay="cosine",
        n_measure=min(budget["n_measure"], steps),
        grid="linear",
    )
    cells = (
        Cell("LoRA r8 q/k/v/o", "h4", Recipe(lora_rank=8, **common), arms, lr_v_ratio=1.0),
        Cell("full finetuning", "h4", Recipe(**common), arms, lr_v_ratio=1.0),
    )
    return Design("V3", size.name, world, {"h4": {}}, size.pretrain, cells)


DESIGN_NAMES = ("V1", "V2", "V3")
_BUILDERS = {"V1": _v1, "V2": _v2, "V3": _v3}


def get_design(name: str, size: str = "tiny") -> Design:
    """The pre-registered design ``name`` (V1, V2, V3) at ``size`` (micro for tests; V3 is GPU-scale at small)."""
    if name not in _BUILDERS:
        raise ConfigError("design", f"must be one of {DESIGN_NAMES}, got {name!r}")
    if size not in _BUDGET:
        raise ConfigError("size", f"must be one of {sorted(_BUDGET)}, got {size!r}")
    return _BUILDERS[name](SIZES[size], _BUDGET[size])
