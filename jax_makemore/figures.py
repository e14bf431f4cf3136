"""The lectures' pictures as matplotlib Figures, for a notebook to show and `plot` to save.

Each `*_figure` function builds a `matplotlib.figure.Figure` directly, not through pyplot: no
global figure registry, no backend switch, so a notebook shows it inline (it is the last value
of a cell) and `fig.savefig(...)` writes it anywhere. `jax_makemore.plot` builds the figures of a
run directory from these and saves them as PNGs.

Needs matplotlib: `pip install -e '.[plot]'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jax_makemore import diagnostics
from jax_makemore.errors import UserError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Characters drawn in a second colour on the embedding map, to make the clusters easy to see.
VOWELS = "aeiou"


def require_matplotlib() -> None:
    """A one-line UserError, not an ImportError trace, when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(
            "plotting needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')"
        ) from None


def new_figure(**kwargs: Any) -> Figure:
    """A Figure outside pyplot (`kwargs` as for `matplotlib.figure.Figure`)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _plain_log_axis(ax: Axes) -> None:
    """A log y axis labelled 2.20, not 2.2x10^0."""
    from matplotlib import ticker

    ax.set_yscale("log")
    plain = ticker.FormatStrFormatter("%.2f")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _steps_axis(ax: Axes) -> None:
    """Step numbers as 50k / 100k, at most six ticks, so long runs stay readable."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.MaxNLocator(6, integer=True))
    ax.xaxis.set_major_formatter(
        ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}")
    )
    ax.set_xlabel("step")


def loss_figure(metrics: list[dict[str, Any]], title: str) -> Figure:
    """Per-chunk training loss (log scale) and the train and val split losses at each
    evaluation, from the rows of a run's metrics.jsonl."""
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    chunks = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    if chunks:
        steps, losses = zip(*chunks, strict=True)
        ax.plot(steps, losses, lw=1, color="tab:blue", alpha=0.8, label="train (chunk mean)")
    evals = [m for m in metrics if m.get("split_loss")]
    for split, color in (("train", "tab:green"), ("val", "tab:orange"), ("test", "tab:red")):
        points = [(m["step"], m["split_loss"][split]) for m in evals]
        points = [(s, v) for s, v in points if v is not None]
        if points and split != "test":  # test is for the final report, not for watching
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o-", ms=4, color=color, label=f"{split} split")
    _plain_log_axis(ax)
    _steps_axis(ax)
    ax.set_ylabel("loss (log scale)")
    final = evals[-1]["split_loss"] if evals else {}
    shown = "  ".join(f"{s} {v:.4f}" for s, v in final.items() if v is not None)
    ax.set_title(f"{title}" + (f"\nfinal: {shown}" if shown else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def bigram_figure(counts_VxV: np.ndarray, itos: Sequence[str]) -> Figure:
    """The count matrix as a heatmap; each cell shows its pair (row char, then column char) and
    count, as in the first lecture. Labels are left out when the vocabulary is too large to read."""
    V = len(itos)
    size = min(max(6.0, 0.5 * V), 16.0)
    fig = new_figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(counts_VxV, cmap="Blues")
    if V <= 40:
        font = 7 if V <= 30 else 5
        dark = 0.5 * float(np.max(counts_VxV))
        for i in range(V):
            for j in range(V):
                color = "white" if counts_VxV[i, j] > dark else "dimgray"
                pair, count = itos[i] + itos[j], f"{int(counts_VxV[i, j])}"
                ax.text(j, i, pair, ha="center", va="bottom", color=color, fontsize=font)
                ax.text(j, i, count, ha="center", va="top", color=color, fontsize=font)
    ax.set_xticks(range(V), labels=list(itos))
    ax.set_yticks(range(V), labels=list(itos))
    ax.set_xlabel("next character")
    ax.set_ylabel("previous character")
    ax.set_title("bigram counts of the training split")
    return fig


def project_2d(emb_VxE: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(coords_Vx2, explained variance ratio of the two axes or None): the embedding itself when
    n_embd <= 2 (n_embd 1 gets a zero second axis), else its top-2 principal components."""
    emb = np.asarray(emb_VxE, np.float64)
    E = emb.shape[1]
    if E == 1:
        return np.concatenate([emb, np.zeros_like(emb)], axis=1), None
    if E == 2:
        return emb, None
    centered = emb - emb.mean(axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return centered @ vt[:2].T, ratio


def embedding_figure(emb_VxE: np.ndarray, itos: Sequence[str], boundary_id: int) -> Figure:
    """Each character at its learned (or top-2 PCA) coordinates; the boundary token in red."""
    coords, ratio = project_2d(emb_VxE)
    fig = new_figure(figsize=(6.5, 6.5))
    ax = fig.subplots()
    vowels = [i for i, c in enumerate(itos) if c.lower() in VOWELS and i != boundary_id]
    others = [i for i in range(len(itos)) if i not in vowels and i != boundary_id]
    for ids, color, label in (
        (others, "tab:blue", "other characters"),
        (vowels, "tab:orange", "vowels " + " ".join(VOWELS)),
    ):
        if ids:
            ax.scatter(coords[ids, 0], coords[ids, 1], s=260, color=color, alpha=0.35, label=label)
    ax.scatter(
        coords[boundary_id, 0],
        coords[boundary_id, 1],
        s=320,
        marker="s",
        color="tab:red",
        alpha=0.5,
        label=f"boundary token {itos[boundary_id]!r}",
    )
    for i, c in enumerate(itos):
        ax.text(coords[i, 0], coords[i, 1], c, ha="center", va="center", fontsize=11)
    E = np.asarray(emb_VxE).shape[1]
    if ratio is None:
        ax.set_xlabel("embedding dim 0")
        ax.set_ylabel("embedding dim 1" if E > 1 else "")
        ax.set_title(f"character embeddings (n_embd {E})")
    else:
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
        ax.set_title(
            f"character embeddings, top-2 PCA of n_embd {E}: {ratio.sum():.0%} of variance explained"
        )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, markerscale=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def _coarsen(hist: np.ndarray) -> np.ndarray:
    """Merge neighbouring bins of a histogram of few values (an embedding table's gradient),
    so that it reads as a distribution rather than as isolated spikes."""
    for factor in (5, 2):
        if len(hist) % factor == 0 and hist.sum() < 20 * len(hist):
            hist = hist.reshape(-1, factor).sum(axis=1)
    return hist


def _bin_centers(lo: float, hi: float, bins: int) -> np.ndarray:
    edges = np.linspace(lo, hi, bins + 1)
    return (edges[:-1] + edges[1:]) / 2


def _tanh_histograms(ax: Axes, first: dict[str, Any], last: dict[str, Any]) -> None:
    for row, style in ((first, "--"), (last, "-")):
        for name, t in row["tanh"].items():
            hist = np.asarray(t["hist"], np.float64)
            x = _bin_centers(-1.0, 1.0, len(hist))
            density = hist / max(hist.sum(), 1) / (2.0 / len(hist))
            label = f"{name} step {row['step']}: saturated {t['saturated']:.1%}"
            ax.plot(x, density, style, label=label)
    ax.set_title(f"tanh outputs (|h| > {diagnostics.SATURATION_THRESHOLD} is saturated)")
    ax.set_xlabel("h")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def _gradient_histograms(ax: Axes, last: dict[str, Any]) -> None:
    for name, g in last["grad"].items():
        hist = _coarsen(np.asarray(g["hist"], np.float64))
        lo, hi = g["lo"], g["hi"]
        if lo is None or hi is None or not hi > lo:
            continue
        width = (hi - lo) / len(hist)
        ax.plot(
            _bin_centers(lo, hi, len(hist)),
            hist / max(hist.sum(), 1) / width,
            label=f"{name}: mean {g['mean']:+.2e} std {g['std']:.2e}",
        )
    ax.set_title(f"gradient distributions at step {last['step']}")
    ax.set_xlabel("gradient")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend(fontsize=8)


def activations_figure(rows: list[dict[str, Any]]) -> Figure:
    """Three panels from the rows of a run's diagnostics log: tanh output histograms (first and
    last measured step) with the saturated fraction, the saturated fraction over training, and
    per-layer gradient histograms at the last step."""
    from matplotlib import ticker

    first, last = rows[0], rows[-1]
    fig = new_figure(figsize=(16, 4.5))
    axes = fig.subplots(1, 3)
    _tanh_histograms(axes[0], first, last)
    ax = axes[1]
    names = list(last["tanh"])
    steps = [r["step"] for r in rows]
    for name in names:
        ax.plot(steps, [r["tanh"].get(name, {}).get("saturated") for r in rows], label=name)
    ax.set_title("saturated fraction over training")
    _steps_axis(ax)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    if names:
        ax.legend(fontsize=8)
    _gradient_histograms(axes[2], last)
    fig.tight_layout()
    return fig


def updates_figure(rows: list[dict[str, Any]]) -> Figure:
    """log10(std(update) / std(param)) of every weight matrix over training, with the lecture's
    guide line at -3."""
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    steps = [r["step"] for r in rows]
    for name in rows[-1]["update_ratio"]:
        ys = [r["update_ratio"].get(name) for r in rows]
        ys = [np.nan if y is None else y for y in ys]
        ax.plot(steps, ys, label=name)
    ax.axhline(-3.0, color="black", ls="--", lw=1, label="guide: 1e-3")
    _steps_axis(ax)
    ax.set_ylabel("log10(std(update) / std(param))")
    ax.set_title("update-to-data ratio per weight matrix")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _sweep_axis_values(values: list[Any]) -> tuple[list[float], list[str], bool]:
    """x positions, tick labels and whether to use a log axis for the values of one swept key:
    numbers at their value (log scale when positive and spanning 10x or more), anything else
    at 0, 1, 2, ... in the order given."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    labels = [str(v) for v in values]
    if not numeric:
        return list(range(len(values))), labels, False
    xs = [float(v) for v in values]
    log = min(xs) > 0 and max(xs) >= 10 * min(xs)
    return xs, labels, log


def _sweep_panel(ax: Axes, record: dict[str, Any], keys: list[str], key: str) -> None:
    """Val loss against swept `key`, one line per setting of the other `keys`."""
    values = record["swept"][key]
    xs, labels, log = _sweep_axis_values(values)
    where = {str(v): x for v, x in zip(values, xs, strict=True)}
    others = [k for k in keys if k != key]
    lines: dict[str, dict[float, list[float]]] = {}
    for m in record["members"]:
        if (m.get("loss") or {}).get("val") is None:
            continue
        label = ", ".join(f"{k}={m['overrides'][k]}" for k in others)
        x = where[str(m["overrides"][key])]
        lines.setdefault(label, {}).setdefault(x, []).append(m["loss"]["val"])
    for label, points in lines.items():
        px = sorted(points)
        mean = np.array([np.mean(points[x]) for x in px])
        lo = mean - np.array([np.min(points[x]) for x in px])
        hi = np.array([np.max(points[x]) for x in px]) - mean
        bars = ax.errorbar(px, mean, yerr=[lo, hi], marker="o", capsize=3, label=label or None)
        for x in px:
            ax.scatter([x] * len(points[x]), points[x], s=10, alpha=0.35, color=bars[0].get_color())
    if log:
        ax.set_xscale("log")
    ax.set_xticks(xs, labels=labels)
    ax.minorticks_off()
    ax.set_xlabel(key)
    ax.set_ylabel("val loss")
    ax.grid(True, alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)


def sweep_losses_figure(record: dict[str, Any]) -> Figure:
    """Val loss against each swept hyper-parameter of a sweep record (its sweep.json): one panel
    per key, one line per setting of the other (non-seed) keys; each point is the mean over seeds
    with min-max bars, and every member is a faint dot."""
    swept = record["swept"]
    keys = [k for k in swept if k != "seed"] or list(swept)
    fig = new_figure(figsize=(5.5 * len(keys), 4.2))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        _sweep_panel(ax, record, keys, key)
    seeds = len(swept.get("seed", [0]))
    fig.suptitle(
        f"sweep of {record['config']}: val loss"
        + (f" (mean over {seeds} seeds, bars min-max)" if seeds > 1 else "")
    )
    fig.tight_layout()
    return fig


def curves_figure(runs: Sequence[tuple[str, list[dict[str, Any]]]], title: str) -> Figure | None:
    """Each (label, metrics rows) run's training loss (chunk means, log scale) and val loss at
    its evaluations (dashed: the averaged params' val, for runs that kept a moving average), one
    colour per label (runs with one label, e.g. the seeds of one setting, share it); None when no
    run has metrics."""
    import matplotlib

    if not any(metrics for _, metrics in runs):
        return None
    fig = new_figure(figsize=(13, 4.5))
    ax_train, ax_val = fig.subplots(1, 2)
    colors: dict[str, Any] = {}
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    averaged = False
    for label, metrics in runs:
        if not metrics:
            continue
        first = label not in colors
        color = colors.setdefault(label, cycle[len(colors) % len(cycle)])
        steps = [r["step"] for r in metrics if "loss" in r]
        losses = [r["loss"] for r in metrics if "loss" in r]
        ax_train.plot(steps, losses, lw=1, alpha=0.6, color=color, label=label if first else None)
        for key, style in (("split_loss", "o-"), ("split_loss_ema", "s--")):
            evals = [(r["step"], (r.get(key) or {}).get("val")) for r in metrics if r.get(key)]
            evals = [(x, y) for x, y in evals if y is not None]
            if evals:
                ax_val.plot(*zip(*evals, strict=True), style, ms=3, lw=1, alpha=0.7, color=color)
                averaged = averaged or key == "split_loss_ema"
    for ax, name in ((ax_train, "train loss (chunk mean)"), (ax_val, "val loss")):
        _plain_log_axis(ax)
        _steps_axis(ax)
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    if averaged:
        ax_val.set_title("val loss (dashed: averaged params)")
    if len(colors) <= 12:
        ax_train.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
