"""The figures read as their captions say: every figure F1-F7 and the bridge's run figure is drawn from its
committed data and its labels are read back from the figure object: every panel has a title and axis
labels, no label is empty, and none is a legend entry (F3 once labelled both y axes with a legend entry).
F7's front is a front: non-increasing in the retention bound, with the admissible set told apart."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from cpi_theory.bridge._plot import draw_run
from cpi_theory.figures import load_dataset, packaged_figures

STEMS = {
    "F1": "f1_inversion",
    "F2": "f2_time_scales",
    "F3": "f3_phase_diagram",
    "F4": "f4_mitigations",
    "F5": "f5_self_aligning",
    "F6": "f6_with_without_context",
    "F7": "f7_designed_mixtures",
}


def _legend_texts(fig) -> set[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return {t.get_text() for legend in legends if legend is not None for t in legend.get_texts()}


def _shares_a_labelled_y(ax) -> bool:
    return any(o is not ax and o.get_ylabel() for o in ax.get_shared_y_axes().get_siblings(ax))


def label_problems(fig) -> list[str]:
    """What a reader would trip on: a panel without a title or an axis label, or a label that is a legend
    entry. A colour bar needs its label; a panel sharing its y axis with a labelled one may omit its own."""
    legend = _legend_texts(fig)
    problems = []
    for i, ax in enumerate(fig.axes):
        if hasattr(ax, "_colorbar"):
            label = ax.get_ylabel() or ax.get_xlabel()
            if not label.strip():
                problems.append(f"axes {i}: colour bar without a label")
            continue
        texts = {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()}
        twin = ax.get_shared_x_axes().get_siblings(ax) != [ax] and not ax.get_title() and ax.get_ylabel()
        for kind, text in texts.items():
            if not text.strip():
                if twin and kind in ("title", "xlabel"):
                    continue  # a twin axis: its partner carries the title and the x label
                if kind == "ylabel" and _shares_a_labelled_y(ax):
                    continue
                problems.append(f"axes {i}: empty {kind}")
            elif text in legend:
                problems.append(f"axes {i}: {kind} {text!r} is a legend entry")
    return problems


@pytest.fixture(scope="module")
def figures(repo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("drawn")
    modules = packaged_figures()
    return {
        figure: modules[figure].plot(load_dataset(str(repo_root / "figures" / f"{stem}.nc")), str(out / stem))
        for figure, stem in STEMS.items()
    }


@pytest.mark.parametrize("figure", list(STEMS))
def test_every_panel_is_labelled_and_no_label_is_a_legend_entry(figures, figure):
    fig = figures[figure]
    assert isinstance(fig, Figure)
    assert label_problems(fig) == []


def test_the_check_can_fail():
    """A planted figure with F3's old mistake (a y label equal to a legend entry) and an empty title."""
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="t -> infinity boundary")
    ax.legend()
    ax.set(xlabel="C+S fraction", ylabel="t -> infinity boundary")
    assert label_problems(fig) == [
        "axes 0: empty title",
        "axes 0: ylabel 't -> infinity boundary' is a legend entry",
    ]


def test_f3_y_axes_name_the_swept_strengths(figures):
    ylabels = [ax.get_ylabel() for ax in figures["F3"].axes if not hasattr(ax, "_colorbar")]
    assert "delta_M" in ylabels[0] and "delta_C" in ylabels[1]


def test_f7_front_is_monotone_and_the_admissible_set_is_visible(figures, repo_root):
    from cpi_theory.figures._f7_designed_mixtures import front_steps, front_value

    ds = load_dataset(str(repo_root / "figures" / "f7_designed_mixtures.nc"))
    left = figures["F7"].axes[0]
    front = next(line for line in left.get_lines() if line.get_drawstyle() == "steps-pre")
    start = float(front.get_xdata()[0])
    assert start <= 1.0  # the front starts at or below retention 1, where W_V frozen keeps the recall
    x, y = front_steps(ds, start)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) <= 0), "the front must not rise with the bound"
    for bound, value in zip(x[1:], y[1:], strict=True):
        assert value == front_value(ds, bound)
    assert np.array_equal(front.get_ydata(), y)
    entries = _legend_texts(figures["F7"])
    assert any("(outside)" in e for e in entries) and any(
        e.startswith("hand: value training") for e in entries
    )
    assert "10 C+S kept, 20 points" in left.get_title()
    assert "bound" in left.get_xlabel()


@pytest.mark.parametrize("example", ["external_example", "joint_example", "tiny_run"])
def test_bridge_run_figure(repo_root, example):
    report = json.loads((repo_root / "figures" / "bridge" / example / "report.json").read_text())
    fig = draw_run(report)
    assert label_problems(fig) == []
    title = fig.axes[0].get_title()
    entries = _legend_texts(fig)
    if "size" in report:  # a bridge run: the transformer and its attention per layer
        assert len(fig.axes) == 2 and any(e.startswith("real transformer") for e in entries)
    else:  # a user's curve: named by its file, no transformer, no empty attention panel
        assert len(fig.axes) == 1
        assert "trajectory.csv" in title and not title.startswith(",")
        assert not any("transformer" in e for e in entries)
        assert "measured (trajectory.csv)" in entries
