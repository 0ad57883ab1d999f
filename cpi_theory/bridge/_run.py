"""One bridge run: pretrain (or load) a model in a regime, finetune it on a mixture, measure, fit the toy."""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..config import DataClass
from ..fit import fit_curve, joint_fit, joint_report_fields, toy_parameters
from ._presets import fact_world_config, get_size, model_config
from ._train import FinetuneConfig, finetune, load_checkpoint, measure_model, pretrain, save_checkpoint
from ._world import FINETUNE_CLASSES, FactWorld, make_fact_world


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
    """(model, fact world, seconds): loaded from ``checkpoint/`` when it holds one, else pretrained (and
    saved there)."""
    size = get_size(size_name)
    fact_world = make_fact_world(fact_world_config(size, regime, seed))
    if checkpoint is not None and (Path(checkpoint) / "params.npz").exists():
        return load_checkpoint(checkpoint), fact_world, 0.0
    started = time.perf_counter()
    pretrain_cfg = dataclasses.replace(size.pretrain, seed=seed)
    config = model_config(size, fact_world.config, seed)
    model, _ = pretrain(fact_world, config, pretrain_cfg, progress=progress)
    seconds = time.perf_counter() - started
    if checkpoint is not None:
        save_checkpoint(model, checkpoint)
    return model, fact_world, seconds


def fit_report_fields(fit: dict) -> dict:
    """The report keys shared by ``bridge run`` and ``bridge fit``, from :func:`fit_curve`'s output.

    ``inversion_toy`` is the a-priori prediction (toy parametrized from the measured start, before any
    fitting); ``inversion_toy_fitted`` here is the time-scale-fitted toy's, and is replaced by the joint
    fit's (:func:`._joint.joint_report_fields`) in the reports of ``bridge run`` and ``bridge fit``."""
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
    fact_world: FactWorld,
    finetune_cfg: FinetuneConfig,
    start: dict,
    *,
    extensions: bool = True,
    progress: bool = True,
) -> dict:
    """Finetune ``model`` on ``fact_world``'s mixture and fit the toy parametrized from ``start``."""
    started = time.perf_counter()
    _, trajectory = finetune(model, fact_world, finetune_cfg, progress=progress)
    seconds = time.perf_counter() - started
    counts = {data_class: len(fact_world.finetune[data_class]) for data_class in FINETUNE_CLASSES}
    n = sum(counts.values())
    params = toy_parameters(
        start["delta_m"],
        start["delta_c"],
        counts[DataClass.NON_CONTEXT_CRITICAL] / n,
        counts[DataClass.SUBJECT_ONLY] / n,
    )
    fit = fit_curve(trajectory["step"], trajectory["context_reliance"], params, extensions=extensions)
    # The joint fit: the mixture is known (real class sizes), delta_M, delta_C, the initial split and the
    # time scale are fitted (the measured delta_C is often outside the toy's domain).
    joint = joint_fit(
        trajectory["step"],
        trajectory["context_reliance"],
        cs_fraction=counts[DataClass.NON_CONTEXT_CRITICAL] / n,
        s_fraction=counts[DataClass.SUBJECT_ONLY] / n,
    )
    real = {k: v for k, v in trajectory.items() if k != "train_loss"}
    real["attention_context"] = np.asarray(trajectory["attention_context"]).T  # (n_layers, n_records)
    return {
        "real": _jsonable(real),
        "train_loss": _jsonable(trajectory["train_loss"]),
        "class_counts": {data_class.label: count for data_class, count in counts.items()},
        "finetune": dataclasses.asdict(finetune_cfg),
        "finetune_seconds": seconds,
        "toy": {
            "step": fit["fit"]["step"],
            "context_reliance": fit["fit"]["context_reliance"],
            "toy_time": [fit["fit"]["time_scale"] * (s - fit["fit"]["step"][0]) for s in fit["fit"]["step"]],
        },
        **fit_report_fields(fit),
        **joint_report_fields(fit["measured"], joint),
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
    model, pretraining_world, pretrain_seconds = pretrained_model(
        size_name, regime, seed, checkpoint, progress
    )
    start = start_state(measure_model(model, pretraining_world))
    mixture = dict(cs_fraction=cs_fraction, s_fraction=s_fraction, filter_cs=filter_cs)
    fact_world = make_fact_world(fact_world_config(size, regime, seed, **mixture))
    finetune_cfg = dataclasses.replace(size.finetune, seed=seed, **(finetune_overrides or {}))
    report = finetune_and_fit(model, fact_world, finetune_cfg, start, progress=progress)
    return {
        "size": size_name,
        "regime": regime,
        "seed": seed,
        "mixture": mixture,
        "model": dataclasses.asdict(model.config),
        "world": dataclasses.asdict(fact_world.config),
        "start": start,
        "pretrain_seconds": pretrain_seconds,
        **report,
    }


def write_json(data: dict, path: str | Path) -> Path:
    """Write ``data`` as the bridge's JSON files are written (NaN as null, indent 1, final newline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(data), indent=1, allow_nan=False) + "\n")
    return path


def write_report(report: dict, out_dir: str | Path) -> Path:
    """Write ``out_dir/report.json`` (``out_dir`` is created)."""
    return write_json(report, Path(out_dir) / "report.json")
