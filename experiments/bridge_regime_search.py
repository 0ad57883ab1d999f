"""Issue 13: a resumable regime search for an inversion of M_C in small real transformers.

The criterion and the design are pre-registered in figures/bridge/search/PREREGISTRATION.md. Stage 1
screens the configurations of ``regime_search.SCREEN`` at seed 0, each with its C+S-0 control;
stage 2 reruns the pre-registered picks at seeds 1 and 2. Every finished run is one JSON line appended to
``--runs``; a rerun skips the runs already there. Pretrained checkpoints are cached under
``--checkpoints`` per (regime, finetuning set size, seed).

    # one core, single-threaded XLA (the 2-core machine is shared)
    taskset -c 1 env OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        .venv/bin/python experiments/bridge_regime_search.py --stage all --out figures/bridge/search
    .venv/bin/python experiments/bridge_regime_search.py --stage table --out figures/bridge/search
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import regime_search as S  # experiments/regime_search.py, beside this script


def write_outputs(out: Path) -> None:
    runs = S.read_runs(out / "runs.jsonl")
    (out / "search_table.md").write_text(S.search_table(runs))
    (out / "transient_table.md").write_text(S.transient_table(runs))
    plot_best(runs, out / "search")


def plot_best(runs: list[dict], stem: Path, n_best: int = 4) -> None:
    """The best configurations' M_C curves (seed mean, seeds faint) beside their C+S-0 controls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in S.summarize(runs) if "treatment" in r]
    if not rows:
        return
    rows.sort(key=lambda r: (-len(r["seeds"]), -(r["treatment"]["depth"] - r["control"]["depth"])))
    rows = rows[:n_best]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        config = row["config"]
        for cfg, color, name in (
            (config, "C3", f"C+S {config['cs_fraction']:g}"),
            (S.control_of(config), "C0", "C+S 0"),
        ):
            curves, seeds, _ = S._curves(runs, cfg, set(row["seeds"]))
            if curves is None:
                continue
            steps = np.arange(curves.shape[1]) * config["measure_every"]
            for c in curves:
                ax.plot(steps, c, color=color, alpha=0.25, lw=0.8)
            ax.plot(steps, curves.mean(axis=0), color=color, lw=2, label=f"{name} (mean of {len(seeds)})")
        t = row["treatment"]
        ax.set_title(
            f"{row['label']}\ndepth {t['depth']:.3f}, control {row['control']['depth']:.3f}", fontsize=8
        )
        ax.set_xscale("symlog", linthresh=50)
        ax.set_xlabel("finetuning step (linear to 50, then log)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("counterfactual context reliance M_C")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{stem}.{ext}", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=("1", "2", "all", "replicate", "table"), default="all")
    parser.add_argument("--out", default="figures/bridge/search")
    parser.add_argument("--checkpoints", default="/tmp/bridge_search_checkpoints")
    parser.add_argument("--set", choices=sorted(S.SCREENS), default="main", help="main screen or addendum 1")
    parser.add_argument("--screen", type=int, default=None, help="first N configurations of the set")
    args = parser.parse_args()
    out = Path(args.out)
    runs_path = out / "runs.jsonl"
    screen = S.SCREENS[args.set][: args.screen]
    started = time.perf_counter()
    if args.stage in ("1", "all"):
        S.ensure_runs(S.stage1_plan(screen), runs_path, args.checkpoints)
        write_outputs(out)
    if args.stage in ("2", "all"):
        runs = S.read_runs(runs_path)
        picks = S.stage2_selection(runs, screen)
        print("stage 2 picks:", [label for label, _ in picks])
        S.ensure_runs(S.stage2_plan(runs, screen=screen), runs_path, args.checkpoints)
    if args.stage == "replicate":  # seeds 1 and 2 of every configuration of the set, no selection
        S.ensure_runs(S.stage2_plan([], screen=screen, select=False), runs_path, args.checkpoints)
    write_outputs(out)
    meta = out / "search_meta.json"
    history = json.loads(meta.read_text()) if meta.exists() else []
    history.append(
        {
            "stage": args.stage,
            "set": args.set,
            "screen": args.screen,
            "wall_seconds": time.perf_counter() - started,
        }
    )
    meta.write_text(json.dumps(history, indent=1) + "\n")
    print(S.search_table(S.read_runs(runs_path)))


if __name__ == "__main__":
    main()
