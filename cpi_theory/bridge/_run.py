"""One bridge run: pretrain (or load) a model in a regime, finetune it on a mixture, measure, fit the toy."""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ._fit import fit_curve, toy_parameters
from ._presets import get_size, model_config, world_config
from ._train import FinetuneConfig, finetune, load_checkpoint, measure_model, pretrain, save_checkpoint
from ._world import World, make_world


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not np.isfinite(x):
        return None  # JSON has no NaN; an empty class has no loss
    return x


def start_state(measured: dict) -> dict:
    """The toy-relevant summary of a pretrained checkpoint's measurements."""
    return {
        "delta_m": float(measured["delta_m"]),
        "delta_c": float(measured["delta_c"]),
        "context_reliance": float(measured["context_reliance"]),
        "parametric_accuracy": float(measured["parametric_accuracy"]),
        "attention_context": [float(a) for a in np.atleast_1d(measured["attention_context"])],
    }


def pretrained_model(
    size_name: str, regime: str, seed: int, checkpoint: str | Path | None = None, progress=True
):
    """(model, world, seconds): loaded from ``checkpoint/`` when it holds one, else pretrained (and saved)."""
    size = get_size(size_name)
    world = make_world(world_config(size, regime, seed))
    if checkpoint is not None and (Path(checkpoint) / "params.npz").exists():
        return load_checkpoint(checkpoint), world, 0.0
    started = time.perf_counter()
    pretrain_cfg = dataclasses.replace(size.pretrain, seed=seed)
    model, _ = pretrain(world, model_config(size, world.config, seed), pretrain_cfg, progress=progress)
    seconds = time.perf_counter() - started
    if checkpoint is not None:
        save_checkpoint(model, checkpoint)
    return model, world, seconds


def fit_report_fields(fit: dict) -> dict:
    """The report keys shared by ``bridge run`` and ``bridge fit``, from :func:`fit_curve`'s output.

    ``inversion_toy`` is the a-priori prediction (toy parametrized from the measured start, before any
    fitting); ``inversion_toy_fitted`` is the time-scale-fitted toy's."""
    return {
        "fit": fit["fit"],
        "prediction": fit["prediction"],
        "extended_fit": fit.get("extended_fit"),
        "prediction_calibrated": fit.get("prediction_calibrated"),
        "measured": fit["measured"],
        "inversion_real": fit["measured"]["inversion"],
        "inversion_toy": fit["prediction"]["summary"]["inversion"],
        "inversion_toy_fitted": fit["fit"]["summary"]["inversion"],
    }


def finetune_and_fit(
    model,
    world: World,
    finetune_cfg: FinetuneConfig,
    start: dict,
    *,
    extensions: bool = True,
    progress: bool = True,
) -> dict:
    """Finetune ``model`` on ``world``'s mixture and fit the toy parametrized from ``start``."""
    started = time.perf_counter()
    _, trajectory = finetune(model, world, finetune_cfg, progress=progress)
    seconds = time.perf_counter() - started
    n_c, n_cs, n_s = (len(world.finetune[k]) for k in ("C", "C+S", "S"))
    n = n_c + n_cs + n_s
    params = toy_parameters(start["delta_m"], start["delta_c"], n_cs / n, n_s / n)
    fit = fit_curve(trajectory["step"], trajectory["context_reliance"], params, extensions=extensions)
    real = {k: v for k, v in trajectory.items() if k != "train_loss"}
    real["attention_context"] = np.asarray(trajectory["attention_context"]).T  # (n_layers, n_records)
    return {
        "real": _jsonable(real),
        "train_loss": _jsonable(trajectory["train_loss"]),
        "class_counts": {"C": n_c, "C+S": n_cs, "S": n_s},
        "finetune": dataclasses.asdict(finetune_cfg),
        "finetune_seconds": seconds,
        "toy": {
            "step": fit["fit"]["step"],
            "context_reliance": fit["fit"]["context_reliance"],
            "toy_time": [fit["fit"]["time_scale"] * (s - fit["fit"]["step"][0]) for s in fit["fit"]["step"]],
        },
        **fit_report_fields(fit),
    }


def run_bridge(
    size_name: str = "tiny",
    regime: str = "moderate",
    seed: int = 0,
    *,
    cs_fraction: float = 0.5,
    s_fraction: float = 0.0,
    filter_cs: bool = False,
    finetune_overrides: dict | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """The whole bridge for one cell; returns the report (see ``cpi-theory bridge run``)."""
    size = get_size(size_name)
    model, pre_world, pretrain_seconds = pretrained_model(size_name, regime, seed, checkpoint, progress)
    start = start_state(measure_model(model, pre_world))
    world = make_world(
        world_config(size, regime, seed, cs_fraction=cs_fraction, s_fraction=s_fraction, filter_cs=filter_cs)
    )
    finetune_cfg = dataclasses.replace(size.finetune, seed=seed, **(finetune_overrides or {}))
    report = finetune_and_fit(model, world, finetune_cfg, start, progress=progress)
    return {
        "size": size_name,
        "regime": regime,
        "seed": seed,
        "mixture": {"cs_fraction": cs_fraction, "s_fraction": s_fraction, "filter_cs": filter_cs},
        "model": dataclasses.asdict(model.config),
        "world": dataclasses.asdict(world.config),
        "start": start,
        "pretrain_seconds": pretrain_seconds,
        **report,
    }


def write_report(report: dict, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
    return path
