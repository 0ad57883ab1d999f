"""Regenerate every figure: run the figure modules shipped in the package, write ``INDEX.md``.

The figures F1-F7 are modules of this package (``cpi_theory.figures._f1_inversion`` ...), found by import,
so ``reproduce`` works from an installed wheel in any directory. ``--experiments-dir DIR`` runs the
``fN_*.py`` files of ``DIR`` instead, each loaded by path (the repository's ``experiments/`` scripts call
the package modules). A figure module defines ``FIGURE`` (e.g. ``"F1"``), ``TITLE`` and
``run(outdir, quick) -> dict`` with keys ``files`` (paths written, relative to ``outdir``), ``numbers``
(name -> value, read back from the data it wrote) and ``notes`` (sentences for the index, e.g. where the
toy disagrees with a paper).
"""

import argparse
import importlib.util
import json
import os
import pathlib
import pkgutil
import re
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from .._precision import enable_float64

_EXPERIMENT_FILE = re.compile(r"^f(\d+)_[a-z0-9_]+\.py$")
_REQUIRED = ("FIGURE", "TITLE", "run")


def packaged_figures() -> dict[str, ModuleType]:
    """Figure id (``"F1"``) -> the figure's module in the package, in figure order.

    Imported on first use, not with the package: the figures pull in matplotlib and xarray.
    """
    from . import (
        _f1_inversion,
        _f2_time_scales,
        _f3_phase_diagram,
        _f4_mitigations,
        _f5_self_aligning,
        _f6_with_without_context,
        _f7_designed_mixtures,
    )

    modules = (
        _f1_inversion,
        _f2_time_scales,
        _f3_phase_diagram,
        _f4_mitigations,
        _f5_self_aligning,
        _f6_with_without_context,
        _f7_designed_mixtures,
    )
    return {module.FIGURE: module for module in modules}


_PACKAGED_FILE = re.compile(r"^_f(\d+)_[a-z0-9_]+$")


def packaged_figure_ids() -> list[str]:
    """The ids of the figures shipped in the package (``["F1", ...]``), from the module names alone: no
    figure module is imported (the command line checks ``--only`` before loading matplotlib or JAX)."""
    found = [
        int(match.group(1))
        for info in pkgutil.iter_modules([str(pathlib.Path(__file__).parent)])
        if (match := _PACKAGED_FILE.match(info.name))
    ]
    return [f"F{n}" for n in sorted(found)]


def script_name(module: ModuleType) -> str:
    """The repository script of a packaged figure (``experiments/<STEM>.py``), named in ``INDEX.md``."""
    return f"{module.STEM}.py"


def find_experiments_dir(explicit: str) -> pathlib.Path:
    """The ``--experiments-dir`` folder, checked: it exists and holds at least one ``fN_*.py`` file."""
    path = pathlib.Path(explicit)
    if not path.is_dir():
        raise FileNotFoundError(f"--experiments-dir: no such directory: {explicit}")
    if not experiment_files(path):
        raise FileNotFoundError(f"--experiments-dir: no figure files (fN_*.py) in {explicit}")
    return path


def experiment_files(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """Figure id (``"F1"``) -> file, in figure order."""
    found = {}
    for path in directory.iterdir():
        match = _EXPERIMENT_FILE.match(path.name)
        if match:
            found[f"F{int(match.group(1))}"] = path
    return dict(sorted(found.items(), key=lambda kv: int(kv[0][1:])))


def load_experiment(path: pathlib.Path) -> ModuleType:
    """Import one experiment file by path (as module ``cpi_experiment_<stem>``)."""
    name = f"cpi_experiment_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in _REQUIRED:
        if not hasattr(module, attr):
            raise ValueError(f"experiment {path} does not define {attr}")
    return module


def select(available: Sequence[str], only: str | None) -> list[str]:
    """Figure ids to run: all (``only`` None), or the comma-separated ``only`` (case-insensitive), checked."""
    if only is None:
        return list(available)
    wanted = [w.strip().upper() for w in only.split(",") if w.strip()]
    if not wanted:
        raise ValueError(f"--only: names no figure, got {only!r} (e.g. --only F1,F3; omit it for all)")
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise ValueError(
            f"--only: unknown figure(s) {', '.join(unknown)} (available: {', '.join(available)})"
        )
    return [f for f in available if f in wanted]


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    """A markdown table cell: a literal ``|`` would end the cell."""
    return text.replace("|", "\\|")


def index_markdown(entries: list[dict]) -> str:
    """``INDEX.md``: each figure, the command that regenerates it, its key numbers and notes."""
    all_quick = bool(entries) and all(e["quick"] for e in entries)
    lines = [
        "# Figures",
        "",
        "Generated by `cpi-theory reproduce"
        + (" --quick" if all_quick else "")
        + "` (run from a clone of the repository). Every number below is read back from the figure's data "
        "file. Data: netCDF3 (xarray, scipy engine) or JSON; figures: PNG and PDF. "
        "See `experiments/README.md` for what each figure shows and how long the runs take.",
        "",
    ]
    for entry in entries:
        mode = "--quick " if entry["quick"] else ""
        title = entry["title"] + (" (quick mode: smaller grids, shorter runs)" if entry["quick"] else "")
        lines += [f"## {entry['figure']}: {title}", ""]
        lines += [f"- Command: `cpi-theory reproduce {mode}--only {entry['figure']}`"]
        lines += [f"  (or `python experiments/{entry['script']} {mode}--outdir <dir>`)"]
        lines += ["- Files: " + ", ".join(f"`{f}`" for f in entry["files"])]
        lines += ["", "| quantity | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(_format(v))} |" for k, v in entry["numbers"].items()]
        if entry.get("notes"):
            lines += [""] + [f"- {note}" for note in entry["notes"]]
        lines += [""]
    return "\n".join(lines)


def reproduce(
    outdir: str,
    *,
    quick: bool = False,
    only: str | None = None,
    experiments_dir: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run the selected figures into ``outdir`` and write ``outdir/INDEX.md``; returns their entries.

    The figures are the package's (:func:`packaged_figures`), or the ``fN_*.py`` files of
    ``experiments_dir`` when given.

    Each figure's entry is also kept as ``outdir/index/<figure>.json``, and INDEX.md lists every entry
    found there: ``--only F3`` updates F3's entry and keeps the others.
    """
    from tqdm import tqdm  # lazily: only reproduce shows a progress bar

    if experiments_dir is None:
        modules = packaged_figures()
        scripts = {figure: script_name(module) for figure, module in modules.items()}
        load = modules.__getitem__
    else:
        files = experiment_files(find_experiments_dir(experiments_dir))
        scripts = {figure: path.name for figure, path in files.items()}
        load = lambda figure: load_experiment(files[figure])
    chosen = select(list(scripts), only)
    os.makedirs(outdir, exist_ok=True)
    entries = []
    bar = tqdm(chosen, desc="reproduce", unit="figure", disable=not progress, file=sys.stderr)
    for figure in bar:
        bar.set_postfix_str(figure)
        module = load(figure)
        result = module.run(outdir, quick)
        entry = {
            "figure": figure,
            "title": module.TITLE,
            "script": scripts[figure],
            "quick": bool(quick),
            "files": list(result["files"]),
            "numbers": dict(result["numbers"]),
            "notes": list(result.get("notes", [])),
        }
        entries.append(entry)
        os.makedirs(os.path.join(outdir, "index"), exist_ok=True)
        with open(os.path.join(outdir, "index", f"{figure}.json"), "w") as f:
            f.write(json.dumps(entry, indent=1) + "\n")
        if log is not None:
            log(f"{figure}: wrote {', '.join(result['files'])}")
    write_index(outdir)
    return entries


def write_index(outdir: str) -> str:
    """Rebuild ``outdir/INDEX.md`` from the entries in ``outdir/index/*.json`` (figure order)."""
    folder = os.path.join(outdir, "index")
    entries = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if re.match(r"^F\d+\.json$", name):
            with open(os.path.join(folder, name)) as f:
                entries.append(json.load(f))
    entries.sort(key=lambda e: int(e["figure"][1:]))
    path = os.path.join(outdir, "INDEX.md")
    with open(path, "w") as f:
        f.write(index_markdown(entries) + "\n")
    return path


def script_main(module_globals: dict, argv: list[str] | None = None) -> int:
    """``python experiments/fN_*.py [--quick] [--outdir DIR]``: run one experiment as a script."""
    parser = argparse.ArgumentParser(description=module_globals.get("__doc__"))
    parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
    parser.add_argument("--outdir", default="figures", help="where data and figures go (default: figures)")
    args = parser.parse_args(argv)
    enable_float64()
    result = module_globals["run"](args.outdir, args.quick)
    for key, value in result["numbers"].items():
        print(f"{key}: {_format(value)}")
    return 0
