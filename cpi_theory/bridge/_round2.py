"""Round two's runs: gated pretrained checkpoints (cached), and a cell's arms finetuned on them."""

import dataclasses
import time
from pathlib import Path

from ._designs import Arm, Cell, Design, gate
from ._recipe import Member, finetune_members
from ._run import start_state
from ._train import load_checkpoint, measure_model, pretrain, save_checkpoint
from ._world import make_fact_world


def gated_checkpoint(design: Design, variant: str, seed: int, root: str | Path | None = None, progress=False):
    """(model, start, gate verdict, pretraining seconds) of ``design``'s checkpoint for (variant, seed).

    Loaded from ``root/<checkpoint_key>`` when there (0 s), else pretrained and saved there.
    """
    world = make_fact_world(design.world_config(seed))
    directory = None if root is None else Path(root) / design.checkpoint_key(variant, seed)
    seconds = 0.0
    if directory is not None and (directory / "params.npz").exists():
        model = load_checkpoint(directory)
    else:
        started = time.perf_counter()
        model, _ = pretrain(
            world,
            design.model_config(variant, world.config, seed),
            dataclasses.replace(design.pretrain, seed=seed),
            progress=progress,
        )
        seconds = time.perf_counter() - started
        if directory is not None:
            save_checkpoint(model, directory)
    start = start_state(measure_model(model, world))
    return model, start, gate(start), seconds


def gated_seeds(
    design: Design,
    variant: str,
    root=None,
    log=None,
    n_seeds: int | None = None,
    deadline: float | None = None,
) -> list[dict]:
    """Seeds from 0 up, pretrained and gated, until ``n_seeds`` (default the design's) pass,
    ``design.max_seed`` seeds were tried, or (``deadline``, a ``time.perf_counter()`` time) no new seed may
    start. Returns one record per seed tried: seed, start, gate, seconds, model (None when the gate failed)."""
    wanted = design.n_seeds if n_seeds is None else n_seeds
    out = []
    for seed in range(design.max_seed):
        if sum(r["gate"]["passed"] for r in out) >= wanted:
            break
        if deadline is not None and time.perf_counter() > deadline:
            break
        model, start, verdict, seconds = gated_checkpoint(design, variant, seed, root)
        out.append(
            {
                "seed": seed,
                "start": start,
                "gate": verdict,
                "seconds": seconds,
                "model": model if verdict["passed"] else None,
            }
        )
        if log is not None:
            log(variant, seed, verdict, seconds)
    return out


def members_of(design: Design, cell: Cell, arms: tuple[Arm, ...], seed: int) -> list[Member]:
    """The finetuning members of ``arms`` of ``cell`` at ``seed``."""
    return [
        Member(make_fact_world(design.world_config(seed, **arm.world)), arm.fresh_share, arm.lr_scale)
        for arm in arms
    ]


def finetune_arms(
    design: Design, cell: Cell, arms, models: dict[int, object], together: bool = False
) -> dict:
    """Finetune ``arms`` of ``cell`` from each seed's model in ``models`` ({seed: model}).

    ``together``: every (seed, arm) in one vmapped program (a GPU); else one program call per seed.
    Returns {(seed, arm name): trajectory} with ``finetune_seconds`` in each trajectory.
    """
    arms = tuple(arms)
    seeds = sorted(models)
    groups = [seeds] if together else [[s] for s in seeds]
    out = {}
    for group in groups:
        started = time.perf_counter()
        members, owners, model_list = [], [], []
        for seed in group:
            members += members_of(design, cell, arms, seed)
            model_list += [models[seed]] * len(arms)
            owners += [(seed, arm.name) for arm in arms]
        member_seeds = [1000 * seed + cell.arms.index(arm) for seed in group for arm in arms]
        trajectories = finetune_members(model_list, members, cell.recipe, seeds=member_seeds)
        seconds = time.perf_counter() - started
        for owner, trajectory in zip(owners, trajectories, strict=True):
            trajectory["finetune_seconds"] = seconds / len(owners)
            out[owner] = trajectory
    return out
