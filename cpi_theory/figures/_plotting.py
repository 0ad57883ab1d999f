"""One shared figure style: colour-blind-safe palette (Okabe-Ito), labelled axes, byte-stable files."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "svg.hashsalt": "cpi_theory",
    "pdf.compression": 6,
}


def apply_style() -> None:
    plt.rcParams.update(STYLE)


def save_figure(fig, path_stem: str, formats=("png", "pdf")) -> list[str]:
    """Save ``fig`` as ``path_stem.png`` and ``path_stem.pdf`` with creation metadata stripped (byte-stable)."""
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{path_stem}.{fmt}"
        metadata = {"CreationDate": None, "ModDate": None} if fmt == "pdf" else {"Software": None}
        fig.savefig(path, format=fmt, metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_trajectory(traj, path: str) -> None:
    """M_C and attention on the test point, per-class attention on context, and losses vs step."""
    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    ax = axes[0]
    ax.plot(traj.step, traj.context_reliance, label="context reliance $M_C$")
    ax.plot(traj.step, traj.attention_context, "--", label="attention on $c^*$")
    s = traj.summary()
    ax.plot([s["peak_step"]], [s["peak"]], "o", color=PALETTE[1], label=f"peak {s['peak']:.3f}")
    ax.set(xlabel="step $t$", ylabel="probability", title="counterfactual test point", ylim=(0, 1))
    ax.legend()
    for name, series in traj.per_class.items():
        axes[1].plot(traj.step, series["attention_context"], label=name)
        axes[2].plot(traj.step, series["loss"], label=name)
    axes[2].plot(traj.step, traj.loss, "k:", label="total")
    axes[1].set(xlabel="step $t$", ylabel="attention on context", title="per data class", ylim=(0, 1))
    axes[2].set(xlabel="step $t$", ylabel="cross-entropy (nats)", title="training loss")
    axes[1].legend()
    axes[2].legend()
    root, ext = os.path.splitext(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    metadata = {"CreationDate": None, "ModDate": None} if ext == ".pdf" else {"Software": None}
    fig.savefig(path, metadata=metadata)
    plt.close(fig)
