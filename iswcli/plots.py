"""Figures as PNG files: the stages' --plot histograms and the figures of `iswt report`.

matplotlib is imported inside the functions (it is slow to import and only
needed when a figure is drawn) and always drives the Agg canvas, so no
display and no configured backend is needed. Every PNG is written to a temp
file and renamed into place, so a crash never leaves half an image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iswcli.artifacts import check_parent_writable
from iswcli.errors import IswtError
from iswcli.outputs import write_atomically

#: About how many values of a per-sample (or per-pair) series a --plot histogram is drawn from.
PLOT_POINTS = 1_000_000

# One colour per series, in order; colour-blind friendly (Okabe-Ito).
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def thinned(values: np.ndarray, share: float) -> np.ndarray:
    """Every k-th of ``values``, k such that about ``share`` x PLOT_POINTS of them remain.

    A stage that streams its input keeps from each batch a share of the
    histogram's points equal to the batch's share of the input rows, so what
    a --plot holds stays bounded however large the input.
    """
    keep = max(1.0, share * PLOT_POINTS)
    return values[:: max(1, math.ceil(values.size / keep))]


def check_plot_path(path: str, flag: str = "--plot") -> None:
    """Fail before any work when the plot cannot be written."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise IswtError(f"{flag} {path}: must end in .png")
    if target.is_dir():
        raise IswtError(f"{flag} {path}: is a directory, expected a .png file path")
    check_parent_writable(path, flag)


def new_figure(ncols: int, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A figure of nrows x ncols panels on the Agg canvas; returns (figure, flat list of axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, whatever the default is
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_png(fig, path: str, dpi: int = 100) -> bytes:
    """Render to PNG, write it atomically (temp + rename) and return the bytes (for embedding)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = buffer.getvalue()
    write_atomically(path, data)
    return data


def write_histograms(path: str, panels: list[tuple[np.ndarray, str, str]]) -> None:
    """Side-by-side histograms (values, title, x label), written to a temp file and renamed into place."""
    fig, axes = new_figure(len(panels), width=5, height=4)
    for ax, (values, title, xlabel) in zip(axes, panels):
        finite = values[np.isfinite(values)]
        ax.hist(finite, bins=60, color="tab:blue")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
    save_png(fig, path)


# --------------------------------------------------------------------------
# Report figures: each takes plain arrays and returns a figure
# --------------------------------------------------------------------------


def _hist(ax, values: np.ndarray, title: str, xlabel: str, color: str = COLORS[0], bins: int = 40) -> None:
    """A histogram of the finite values; a note instead of an empty box when there are none."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if finite.size == 0:
        _empty(ax, "no finite values")
        return
    ax.hist(finite, bins=_bins(finite, bins), color=color, edgecolor="white", linewidth=0.5)


def _bins(values: np.ndarray, most: int):
    """One bar per value for discrete data (binary or graded rewards), else even bins.

    Data count as discrete when a few values repeat many times; ten distinct
    per-prompt means are continuous data that happen to be few, and get
    fewer, wider bins instead of needle-thin bars.
    """
    distinct = np.unique(values)
    if distinct.size == 1:
        return [distinct[0] - 0.5, distinct[0] + 0.5]
    if distinct.size <= 12 and values.size >= 3 * distinct.size:
        step = np.min(np.diff(distinct))
        if (distinct[-1] - distinct[0]) / step <= 60:  # a lattice, not a few scattered values
            return np.arange(distinct[0] - step / 2, distinct[-1] + step, step)
    return int(min(most, max(8, 2 * np.sqrt(values.size))))


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def reward_figure(reward: np.ndarray, prompt_mean: np.ndarray):
    """Rewards of all samples, and each prompt's mean reward."""
    fig, (left, right) = new_figure(2)
    _hist(left, reward, f"reward per sample (n={reward.size})", "reward")
    _hist(right, prompt_mean, f"mean reward per prompt (n={prompt_mean.size})", "mean reward", COLORS[1])
    return fig


def z_figure(relative_lw: np.ndarray | None, ess_frac: np.ndarray, khat: np.ndarray, low_ess: float, khat_note: str):
    """Log-weights relative to their prompt's mean, ESS/K per prompt, and k-hat per prompt.

    The dashed lines are the flag thresholds: low ESS/K, and k-hat 0.5 / 0.7.
    """
    fig, (lw_ax, ess_ax, k_ax) = new_figure(3, width=4.4)
    if relative_lw is None:
        lw_ax.set_title("log-weight relative to prompt mean")
        _empty(lw_ax, "inputs not found:\nlog-weights not recomputed")
    else:
        _hist(lw_ax, relative_lw, "log-weight relative to prompt mean", "lw - log Z_hat")
        lw_ax.axvline(0.0, color="0.3", linestyle=":", linewidth=1)
    _hist(ess_ax, ess_frac, "ESS / K per prompt", "ESS / K", COLORS[2])
    ess_ax.axvline(low_ess, color=COLORS[3], linestyle="--", linewidth=1, label=f"low_ess < {low_ess:g}")
    ess_ax.legend(loc="best", fontsize=8)
    if np.isfinite(khat).any():
        _hist(k_ax, khat, "Pareto k-hat per prompt", "k-hat", COLORS[4])
        for threshold in (0.5, 0.7):
            k_ax.axvline(threshold, color=COLORS[3], linestyle="--", linewidth=1)
    else:
        k_ax.set_title("Pareto k-hat per prompt")
        _empty(k_ax, f"k-hat is NaN for every prompt\n{_wrap(khat_note, 40)}")
    return fig


def pair_weight_figure(series: Sequence[tuple[str, np.ndarray, np.ndarray]]):
    """Pair weights relative to uniform, one step histogram per series, and weight ESS per prompt.

    ``series``: (label, log10(weight x pairs in its prompt), ESS / pairs per prompt).
    0 on the left panel is a pair carrying exactly the uniform share. The first
    series (the stored weights) is drawn dashed and on top, so it stays
    visible where a recomputed series coincides with it.
    """
    fig, (left, right) = new_figure(2, width=5.6)
    finite = [v[np.isfinite(v)] for _, v, _ in series]
    joined = np.concatenate(finite) if finite else np.zeros(0)
    low, high = (joined.min(), joined.max()) if joined.size else (-1.0, 1.0)
    edges = np.linspace(low - 0.05, high + 0.05, 41)
    for i, ((label, values, _), color) in enumerate(zip(series, COLORS)):
        style = {"linestyle": "--", "zorder": 3, "color": "black"} if i == 0 else {"color": color}
        left.hist(values[np.isfinite(values)], bins=edges, histtype="step", linewidth=1.6, label=label, **style)
    left.set_title("pair weight relative to uniform")
    left.set_xlabel("log10(weight x pairs in prompt)")
    left.set_ylabel("pairs")
    left.legend(fontsize=8)
    labels = [label for label, _, _ in series]
    right.boxplot([ess for _, _, ess in series], showfliers=False)
    right.set_xticks(range(1, len(labels) + 1), labels, rotation=20, fontsize=8)
    right.set_title("weight ESS / pairs, per prompt")
    right.set_ylabel("ESS / pairs (1 = uniform)")
    right.set_ylim(0, 1.05)
    return fig


def training_figure(
    step: np.ndarray,
    loss: np.ndarray,
    parts: dict[str, np.ndarray],
    log_ratio: np.ndarray | None,
    kl_curves: dict[str, np.ndarray] | None = None,
):
    """Loss, its logged parts (one line each), the mean policy/reference log-ratio and, when train measured
    them (--eval-target-every), kl_set against the exact target, against step."""
    fig, axes = new_figure(4 if kl_curves else 3, width=4.4)
    loss_ax, parts_ax, ratio_ax = axes[:3]
    if kl_curves:
        kl_ax = axes[3]
        for (name, values), color in zip(kl_curves.items(), COLORS):
            measured = np.isfinite(values)  # measured every N steps: join the measured points
            kl_ax.plot(step[measured], values[measured], color=color, marker="o", label=name)
        kl_ax.set_title("KL(pi* || policy), exact")
        kl_ax.set_xlabel("step")
        kl_ax.legend(fontsize=8)
    loss_ax.plot(step, loss, color=COLORS[0], marker="." if step.size < 50 else None)
    loss_ax.set_title("loss")
    loss_ax.set_xlabel("step")
    parts_ax.set_title("loss parts")
    parts_ax.set_xlabel("step")
    if parts:
        for (name, values), color in zip(parts.items(), COLORS[1:] + COLORS[:1]):
            parts_ax.plot(step, values, color=color, label=name)
        parts_ax.legend(fontsize=8)
    else:
        _empty(parts_ax, "no loss parts logged")
    ratio_ax.set_title("mean log pi_theta - log pi_ref")
    ratio_ax.set_xlabel("step")
    if log_ratio is None:
        _empty(ratio_ax, "log_ratio_mean not logged")
    else:
        ratio_ax.plot(step, log_ratio, color=COLORS[2])
        ratio_ax.axhline(0.0, color="0.3", linestyle=":", linewidth=1)
    return fig


def interval_bars_figure(panels: Sequence[tuple[str, Sequence[str], np.ndarray, np.ndarray, np.ndarray]]):
    """Side-by-side bar charts with confidence intervals as error bars.

    ``panels``: (title, bar labels, estimates, interval lows, interval highs).
    A NaN estimate (nothing to average) leaves its bar out and says so.
    """
    fig, axes = new_figure(len(panels), width=max(3.2, min(5.0, 13.0 / len(panels))), height=3.6)
    for ax, (title, labels, est, lo, hi) in zip(axes, panels):
        est, lo, hi = (np.asarray(a, dtype=float) for a in (est, lo, hi))
        x = np.arange(len(labels))
        shown = np.isfinite(est)
        colors = [COLORS[i % len(COLORS)] for i in range(len(labels))]
        ax.bar(x[shown], est[shown], color=[c for c, s in zip(colors, shown) if s], alpha=0.85)
        errors = np.vstack([est - lo, hi - est])[:, shown]
        ax.errorbar(x[shown], est[shown], yerr=np.nan_to_num(errors), fmt="none", ecolor="black", capsize=4)
        for xi in x[~shown]:
            ax.text(xi, 0, "n/a", ha="center", va="bottom", color="0.4")
        ax.set_xticks(x, [_wrap(label, 14) for label in labels], fontsize=8)
        ax.set_title(title)
    return fig


def _wrap(text: str, width: int) -> str:
    """Break a long label into lines of at most about `width` characters."""
    text = str(text)
    return "\n".join(text[i : i + width] for i in range(0, len(text), width)) if len(text) > width else text


def against_n_figure(panels: Sequence[tuple[str, dict[str, tuple[list, list, list, list]]]], ylabel: str):
    """One panel per (title, {series: (N values, estimates, lows, highs)}): a line per series with interval bars,
    N on a log-2 axis (series nudged sideways so their bars do not cover each other)."""
    fig, axes = new_figure(len(panels), width=5.2, height=3.8)
    for ax, (title, series) in zip(axes, panels):
        ns = sorted({n for xs, *_ in series.values() for n in xs})
        for i, ((label, (xs, est, lo, hi)), color) in enumerate(zip(series.items(), COLORS * 3)):
            nudge = 1 + 0.03 * (i - (len(series) - 1) / 2)
            yerr = [np.subtract(est, lo), np.subtract(hi, est)]
            ax.errorbar(np.array(xs) * nudge, est, yerr=yerr, marker="o", capsize=3, color=color, label=label)
        ax.axhline(0.0, color="0.3", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        if ns:
            ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("samples per prompt N")
        ax.set_title(title)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=8)
    return fig
