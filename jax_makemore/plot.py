"""`python -m jax_makemore.plot --workdir DIR [--out DIR]`: the lectures' pictures of a run.

Writes, as far as the run has what each needs:

* `loss.png`: training loss per chunk (log scale) and the split losses at each evaluation,
  from `metrics.jsonl`;
* `bigram.png` (fitted count-table models): the count matrix of the training split as a heatmap, each
  cell labelled with its character pair and count;
* `embedding.png` (models with an embedding table): every character at its learned coordinates,
  the first two principal components when n_embd > 2;
* `activations.png` and `updates.png` (runs trained with `--config.log_diagnostics=True`):
  tanh output histograms and saturation, gradient histograms, and update-to-data ratios.

On a sweep's workdir (`python -m jax_makemore.sweep`, detected by its `sweep.json`): `sweep.png`
(val loss against each swept hyper-parameter, mean over seeds with min-max bars) and
`sweep_curves.png` (every member's loss curves).

`python -m jax_makemore.plot --compare DIR... --out FILE.png`: several runs' loss curves in one
picture (val dashed for the averaged params of runs that keep a moving average).

Needs matplotlib: `pip install -e '.[plot]'`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_makemore import diagnostics
from jax_makemore.errors import UserError, run_cli
from jax_makemore.workdir import read_jsonl

#: Characters drawn in a second colour on the embedding map, to make the clusters easy to see.
VOWELS = "aeiou"


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "plotting needs matplotlib: pip install matplotlib (or pip install -e '.[plot]')"
        ) from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path


def plot_loss(metrics: list[dict[str, Any]], path: Path, title: str, dpi: int = 100) -> Path:
    """Per-chunk training loss (log scale) and split losses at each evaluation."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
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
    ax.set_yscale("log")
    plain = plt.matplotlib.ticker.FormatStrFormatter("%.2f")  # not 2.2x10^0 on a log axis
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    _steps_axis(ax)
    ax.set_ylabel("loss (log scale)")
    final = evals[-1]["split_loss"] if evals else {}
    shown = "  ".join(f"{s} {v:.4f}" for s, v in final.items() if v is not None)
    ax.set_title(f"{title}" + (f"\nfinal: {shown}" if shown else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path, dpi)


def plot_bigram(counts_VxV: np.ndarray, itos: Sequence[str], path: Path, dpi: int = 80) -> Path:
    """The count matrix as a heatmap; each cell shows its pair (row char, then column char) and
    count, as in the first lecture. Labels are left out when the vocabulary is too large to read."""
    plt = pyplot()
    V = len(itos)
    size = min(max(6.0, 0.5 * V), 16.0)
    fig, ax = plt.subplots(figsize=(size, size))
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
    return save_figure(fig, path, dpi)


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


def plot_embedding(
    emb_VxE: np.ndarray, itos: Sequence[str], boundary_id: int, path: Path, dpi: int = 100
) -> Path:
    """Each character at its learned (or top-2 PCA) coordinates; the boundary token in red."""
    plt = pyplot()
    coords, ratio = project_2d(emb_VxE)
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
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
    return save_figure(fig, path, dpi)


def _steps_axis(ax) -> None:
    """Step numbers as 50k / 100k, at most six ticks, so long runs stay readable."""
    ticker = pyplot().matplotlib.ticker
    ax.xaxis.set_major_locator(ticker.MaxNLocator(6, integer=True))
    ax.xaxis.set_major_formatter(
        ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}")
    )
    ax.set_xlabel("step")


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


def plot_activations(rows: list[dict[str, Any]], path: Path, dpi: int = 100) -> Path:
    """Tanh output histograms (first and last measured step) with the saturated fraction, the
    saturated fraction over training, and per-layer gradient histograms at the last step."""
    plt = pyplot()
    first, last = rows[0], rows[-1]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    for row, style in ((first, "--"), (last, "-")):
        for name, t in row["tanh"].items():
            hist = np.asarray(t["hist"], np.float64)
            x = _bin_centers(-1.0, 1.0, len(hist))
            density = hist / max(hist.sum(), 1) / (2.0 / len(hist))
            ax.plot(
                x,
                density,
                style,
                label=f"{name} step {row['step']}: saturated {t['saturated']:.1%}",
            )
    ax.set_title(f"tanh outputs (|h| > {diagnostics.SATURATION_THRESHOLD} is saturated)")
    ax.set_xlabel("h")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)

    ax = axes[1]
    names = list(last["tanh"])
    steps = [r["step"] for r in rows]
    for name in names:
        ax.plot(steps, [r["tanh"].get(name, {}).get("saturated") for r in rows], label=name)
    ax.set_title("saturated fraction over training")
    _steps_axis(ax)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    if names:
        ax.legend(fontsize=8)

    ax = axes[2]
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
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_updates(rows: list[dict[str, Any]], path: Path, dpi: int = 100) -> Path:
    """log10(std(update) / std(param)) of every weight matrix over training, with the lecture's
    guide line at -3."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
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
    return save_figure(fig, path, dpi)


def find_token_embedding(params: Any, vocab_size: int) -> np.ndarray | None:
    """The character embedding table: a param named 'embedding' (as flax.linen.Embed names it)
    with one row per vocabulary entry, so a position table is never taken for it."""
    import jax

    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = diagnostics.path_name(path).split("/")[-1]
        if name == "embedding" and leaf.ndim == 2 and leaf.shape[0] == vocab_size:
            return np.asarray(leaf)
    return None


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


def plot_sweep_losses(record: dict[str, Any], path: Path, dpi: int = 100) -> Path:
    """Val loss against each swept hyper-parameter: one panel per key, one line per setting of
    the other (non-seed) keys; each point is the mean over seeds with min-max bars, and every
    member is a faint dot."""
    plt = pyplot()
    swept = record["swept"]
    keys = [k for k in swept if k != "seed"] or list(swept)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    done = [m for m in record["members"] if (m.get("loss") or {}).get("val") is not None]
    for ax, key in zip(axes[0], keys, strict=True):
        values = swept[key]
        xs, labels, log = _sweep_axis_values(values)
        where = {str(v): x for v, x in zip(values, xs, strict=True)}
        others = [k for k in keys if k != key]
        lines: dict[str, dict[float, list[float]]] = {}
        for m in done:
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
                ax.scatter(
                    [x] * len(points[x]), points[x], s=10, alpha=0.35, color=bars[0].get_color()
                )
        if log:
            ax.set_xscale("log")
        ax.set_xticks(xs, labels=labels)
        ax.minorticks_off()
        ax.set_xlabel(key)
        ax.set_ylabel("val loss")
        ax.grid(True, alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=8)
    seeds = len(swept.get("seed", [0]))
    fig.suptitle(
        f"sweep of {record['config']}: val loss"
        + (f" (mean over {seeds} seeds, bars min-max)" if seeds > 1 else "")
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_curves(
    runs: Sequence[tuple[str, list[dict[str, Any]]]], path: Path, title: str, dpi: int = 100
) -> Path | None:
    """Each run's training loss (chunk means, log scale) and val loss at its evaluations (dashed:
    the averaged params' val, for runs that kept a moving average), one colour per label (runs
    with one label, e.g. the seeds of one setting, share it); None when no run has metrics."""
    plt = pyplot()
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(13, 4.5))
    colors: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = averaged = False
    for label, metrics in runs:
        if not metrics:
            continue
        first = label not in colors
        color = colors.setdefault(label, cycle[len(colors) % len(cycle)])
        steps = [r["step"] for r in metrics if "loss" in r]
        ax_train.plot(steps, [r["loss"] for r in metrics if "loss" in r], lw=1, alpha=0.6,
                      color=color, label=label if first else None)  # fmt: skip
        for key, style in (("split_loss", "o-"), ("split_loss_ema", "s--")):
            evals = [(r["step"], (r.get(key) or {}).get("val")) for r in metrics if r.get(key)]
            evals = [(x, y) for x, y in evals if y is not None]
            if evals:
                ax_val.plot(*zip(*evals, strict=True), style, ms=3, lw=1, alpha=0.7, color=color)
                averaged = averaged or key == "split_loss_ema"
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax, name in ((ax_train, "train loss (chunk mean)"), (ax_val, "val loss")):
        ax.set_yscale("log")
        plain = plt.matplotlib.ticker.FormatStrFormatter("%.2f")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        _steps_axis(ax)
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    if averaged:
        ax_val.set_title("val loss (dashed: averaged params)")
    if len(colors) <= 12:
        ax_train.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_sweep_curves(
    record: dict[str, Any], workdir: Path, path: Path, dpi: int = 100
) -> Path | None:
    """Every member's loss curves (`plot_curves`), one colour per setting of the non-seed keys;
    None when no member has metrics."""
    keys = [k for k in record["swept"] if k != "seed"]
    runs = [
        (
            ", ".join(f"{k}={m['overrides'][k]}" for k in keys) or m["name"],
            read_jsonl(workdir / m["workdir"] / "metrics.jsonl"),
        )
        for m in record["members"]
    ]
    title = f"sweep of {record['config']}: {len(record['members'])} members"
    return plot_curves(runs, path, title, dpi)


def plot_compare(workdirs: Sequence[str | Path], path: str | Path, dpi: int = 100) -> Path:
    """One picture of several runs' loss curves (`plot_curves`), labelled by directory name:
    separate `train` runs, or sweep members, side by side."""
    runs = []
    for workdir in map(Path, workdirs):
        metrics_file = workdir / "metrics.jsonl"
        if not metrics_file.is_file():
            raise UserError(f"--compare: '{workdir}' has no metrics.jsonl (not a trained run)")
        runs.append((workdir.name, read_jsonl(metrics_file)))
    path = Path(path)
    if path.suffix != ".png":
        raise UserError(f"--out '{path}' must name a .png file with --compare")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = plot_curves(runs, path, f"{len(runs)} runs", dpi)
    if written is None:
        raise UserError("--compare: none of the runs has logged a training step yet")
    return written


def plot_sweep(
    workdir: str | Path, out: str | Path | None = None, dpi: int | None = None
) -> tuple[list[Path], list[str]]:
    """The pictures of a sweep workdir (one with sweep.json): `sweep.png` (val loss against
    each swept key) and `sweep_curves.png` (every member's loss curves). The members' own
    pictures: `plot --workdir DIR/members/NAME`."""
    import json

    workdir = Path(workdir)
    record = json.loads((workdir / "sweep.json").read_text(encoding="utf-8"))
    out = output_dir(workdir, out)
    kw = {} if dpi is None else {"dpi": dpi}
    written, skipped = [], []
    if any((m.get("loss") or {}).get("val") is not None for m in record["members"]):
        written.append(plot_sweep_losses(record, out / "sweep.png", **kw))
    else:
        skipped.append("sweep.png: no member has a val loss yet (finish the sweep with --resume)")
    curves = plot_sweep_curves(record, workdir, out / "sweep_curves.png", **kw)
    if curves is not None:
        written.append(curves)
    else:
        skipped.append("sweep_curves.png: no member has metrics.jsonl yet")
    return written, skipped


def output_dir(workdir: Path, out: str | Path | None) -> Path:
    """The folder pictures go to (default: the workdir), created; a file there is a UserError."""
    out = Path(out) if out is not None else workdir
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def plot_run(
    workdir: str | Path, out: str | Path | None = None, dpi: int | None = None
) -> tuple[list[Path], list[str]]:
    """Write every picture the run in `workdir` supports into `out` (default: the workdir);
    `dpi` overrides each picture's default resolution. Returns (written paths, one line per
    picture that does not apply to this run, saying why)."""
    from jax_makemore.data import dataset_from_config
    from jax_makemore.models.bigram import count_table
    from jax_makemore.restore import load_trained

    pyplot()  # fail early and clearly without matplotlib
    workdir = Path(workdir)
    if (workdir / "sweep.json").is_file():  # a sweep's workdir (python -m jax_makemore.sweep)
        return plot_sweep(workdir, out, dpi)
    loaded = load_trained(workdir)
    out = output_dir(workdir, out)
    kw = {} if dpi is None else {"dpi": dpi}
    written, skipped = [], []
    name = loaded.config.model.name
    metrics = read_jsonl(workdir / "metrics.jsonl")
    if metrics:
        title = f"{loaded.config_name} ({name}), {loaded.step} steps"
        written.append(plot_loss(metrics, out / "loss.png", title, **kw))
    else:
        skipped.append("loss.png: the workdir has no metrics.jsonl")
    vocab = loaded.vocab
    if loaded.spec.fit is not None:
        ds = dataset_from_config(loaded.config, vocab=vocab, seq_len=loaded.seq_len)
        counts = np.asarray(count_table(*ds.split("train"), vocab.size))
        written.append(plot_bigram(counts, vocab.itos, out / "bigram.png", **kw))
    else:
        skipped.append(f"bigram.png: model {name} is not a fitted count table")
    emb = find_token_embedding(loaded.variables["params"], vocab.size)
    if emb is not None:
        written.append(
            plot_embedding(emb, vocab.itos, vocab.boundary_id, out / "embedding.png", **kw)
        )
    else:
        skipped.append(f"embedding.png: model {name} has no character embedding table")
    rows = read_jsonl(workdir / diagnostics.FILENAME)
    if rows:
        written.append(plot_activations(rows, out / "activations.png", **kw))
        written.append(plot_updates(rows, out / "updates.png", **kw))
    else:
        skipped.append(
            "activations.png, updates.png: the run was trained without --config.log_diagnostics=True"
        )
    return written, skipped


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.plot", description="Draw the pictures of a trained run."
    )
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument("--workdir", help="a run directory written by train (or by sweep)")
    runs.add_argument(
        "--compare", nargs="+", metavar="DIR", help="run directories drawn in one picture"
    )
    parser.add_argument(
        "--out", default=None,
        help="where to write the PNGs (default: workdir); with --compare, the PNG file",
    )  # fmt: skip
    parser.add_argument("--dpi", type=int, default=None, help="resolution of every PNG")
    args = parser.parse_args(argv)
    if args.dpi is not None and args.dpi <= 0:
        raise UserError(f"--dpi must be > 0, got {args.dpi}")
    if args.compare:
        if args.out is None:
            raise UserError("--compare needs --out FILE.png")
        kw = {} if args.dpi is None else {"dpi": args.dpi}
        print(plot_compare(args.compare, args.out, **kw))
        return 0
    written, skipped = plot_run(args.workdir, args.out, args.dpi)
    for path in written:
        print(path)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
