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

In a notebook, `run_figures(DIR)` gives the same pictures as matplotlib Figures keyed by file stem
(`run_figures(DIR)["loss"]` shows inline), `compare_figure(DIRS)` the comparison; the single
pictures are the `*_figure` functions of `jax_makemore.figures`, re-exported here.

Needs matplotlib: `pip install -e '.[plot]'`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jax_makemore import diagnostics, rundir
from jax_makemore.errors import UserError, run_cli
from jax_makemore.figures import (
    VOWELS,
    activations_figure,
    bigram_figure,
    curves_figure,
    embedding_figure,
    loss_figure,
    project_2d,
    require_matplotlib,
    sweep_losses_figure,
    updates_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from jax_makemore.restore import LoadedModel

__all__ = [
    "VOWELS",
    "activations_figure",
    "bigram_counts_of",
    "bigram_figure",
    "bigram_figure_of",
    "compare_figure",
    "curves_figure",
    "embedding_figure",
    "embedding_figure_of",
    "loss_figure",
    "project_2d",
    "run_figures",
    "sweep_curves_figure",
    "sweep_figures",
    "sweep_losses_figure",
    "updates_figure",
]

#: Resolution of each picture when none is given (the count table is large); others: 100.
DEFAULT_DPI = {"bigram": 80}


def save_figure(fig: Figure, path: Path, dpi: int) -> Path:
    """Write `fig` to `path` cropped to its content; a pyplot figure is closed after."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if "matplotlib.pyplot" in sys.modules:  # a Figure made outside pyplot is not registered
        sys.modules["matplotlib.pyplot"].close(fig)
    return path


def plot_loss(metrics: list[dict[str, Any]], path: Path, title: str, dpi: int = 100) -> Path:
    """`loss_figure` saved to `path`."""
    return save_figure(loss_figure(metrics, title), path, dpi)


def plot_bigram(counts_VxV: np.ndarray, itos: Sequence[str], path: Path, dpi: int = 80) -> Path:
    """`bigram_figure` saved to `path`."""
    return save_figure(bigram_figure(counts_VxV, itos), path, dpi)


def plot_embedding(
    emb_VxE: np.ndarray, itos: Sequence[str], boundary_id: int, path: Path, dpi: int = 100
) -> Path:
    """`embedding_figure` saved to `path`."""
    return save_figure(embedding_figure(emb_VxE, itos, boundary_id), path, dpi)


def plot_activations(rows: list[dict[str, Any]], path: Path, dpi: int = 100) -> Path:
    """`activations_figure` saved to `path`."""
    return save_figure(activations_figure(rows), path, dpi)


def plot_updates(rows: list[dict[str, Any]], path: Path, dpi: int = 100) -> Path:
    """`updates_figure` saved to `path`."""
    return save_figure(updates_figure(rows), path, dpi)


def plot_sweep_losses(record: dict[str, Any], path: Path, dpi: int = 100) -> Path:
    """`sweep_losses_figure` saved to `path`."""
    return save_figure(sweep_losses_figure(record), path, dpi)


def plot_curves(
    runs: Sequence[tuple[str, list[dict[str, Any]]]], path: Path, title: str, dpi: int = 100
) -> Path | None:
    """`curves_figure` saved to `path`; None (nothing written) when no run has metrics."""
    fig = curves_figure(runs, title)
    return None if fig is None else save_figure(fig, path, dpi)


def find_token_embedding(params: Any, vocab_size: int) -> np.ndarray | None:
    """The character embedding table: a param named 'embedding' (as flax.linen.Embed names it)
    with one row per vocabulary entry, so a position table is never taken for it."""
    import jax

    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = diagnostics.path_name(path).split("/")[-1]
        if name == "embedding" and leaf.ndim == 2 and leaf.shape[0] == vocab_size:
            return np.asarray(leaf)
    return None


def embedding_figure_of(loaded: LoadedModel) -> Figure | None:
    """The embedding map of a loaded model (`restore.load_trained`); None when it has no
    character embedding table."""
    vocab = loaded.vocab
    emb_VxE = find_token_embedding(loaded.variables["params"], vocab.size)
    return None if emb_VxE is None else embedding_figure(emb_VxE, vocab.itos, vocab.boundary_id)


def bigram_counts_of(loaded: LoadedModel) -> np.ndarray | None:
    """counts_VxV of the training split of a loaded count-table model (rebuilt from its data
    file, as the fit saw it); None for a model that is not fitted by counting."""
    from jax_makemore.data import dataset_from_config
    from jax_makemore.models.bigram import count_table

    if loaded.spec.fit is None:
        return None
    ds = dataset_from_config(loaded.config, vocab=loaded.vocab, seq_len=loaded.seq_len)
    import jax.numpy as jnp

    X_NxT, Y_N = (jnp.asarray(a) for a in ds.split("train"))
    return np.asarray(count_table(X_NxT, Y_N, loaded.vocab.size))


def bigram_figure_of(loaded: LoadedModel) -> Figure | None:
    """The count table of a loaded count-table model; None for any other model."""
    counts_VxV = bigram_counts_of(loaded)
    return None if counts_VxV is None else bigram_figure(counts_VxV, loaded.vocab.itos)


def sweep_curves_figure(record: dict[str, Any], workdir: str | Path) -> Figure | None:
    """Every member's loss curves (`curves_figure`) of the sweep in `workdir` with record
    `record` (its sweep.json), one colour per setting of the non-seed keys; None when no member
    has metrics."""
    keys = [k for k in record["swept"] if k != "seed"]
    runs = [
        (
            ", ".join(f"{k}={m['overrides'][k]}" for k in keys) or m["name"],
            rundir.read_metrics(Path(workdir) / m["workdir"]),
        )
        for m in record["members"]
    ]
    return curves_figure(runs, f"sweep of {record['config']}: {len(record['members'])} members")


def plot_sweep_curves(
    record: dict[str, Any], workdir: Path, path: Path, dpi: int = 100
) -> Path | None:
    """`sweep_curves_figure` saved to `path`; None (nothing written) when no member has metrics."""
    fig = sweep_curves_figure(record, workdir)
    return None if fig is None else save_figure(fig, path, dpi)


def _compare_runs(workdirs: Sequence[str | Path]) -> list[tuple[str, list[dict[str, Any]]]]:
    runs = []
    for workdir in map(Path, workdirs):
        metrics_file = workdir / rundir.METRICS_FILE
        if not metrics_file.is_file():
            raise UserError(f"--compare: '{workdir}' has no metrics.jsonl (not a trained run)")
        runs.append((workdir.name, rundir.read_jsonl(metrics_file)))
    return runs


def _compare_figure_of(runs: list[tuple[str, list[dict[str, Any]]]]) -> Figure:
    fig = curves_figure(runs, f"{len(runs)} runs")
    if fig is None:
        raise UserError("--compare: none of the runs has logged a training step yet")
    return fig


def compare_figure(workdirs: Sequence[str | Path]) -> Figure:
    """Several runs' loss curves in one figure (`curves_figure`), labelled by directory name:
    separate `train` runs, or sweep members, side by side."""
    return _compare_figure_of(_compare_runs(workdirs))


def plot_compare(workdirs: Sequence[str | Path], path: str | Path, dpi: int = 100) -> Path:
    """`compare_figure` saved to `path` (a .png file; its folder is created)."""
    runs = _compare_runs(workdirs)
    path = Path(path)
    if path.suffix != ".png":
        raise UserError(f"--out '{path}' must name a .png file with --compare")
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(_compare_figure_of(runs), path, dpi)


def _sweep_figures(workdir: Path) -> tuple[dict[str, Figure], list[str]]:
    """(figures by file stem, one line per picture that does not apply yet, saying why) of the
    sweep workdir `workdir`."""
    record = rundir.read_sweep(workdir)
    figures, skipped = {}, []
    if any((m.get("loss") or {}).get("val") is not None for m in record["members"]):
        figures["sweep"] = sweep_losses_figure(record)
    else:
        skipped.append("sweep.png: no member has a val loss yet (finish the sweep with --resume)")
    curves = sweep_curves_figure(record, workdir)
    if curves is not None:
        figures["sweep_curves"] = curves
    else:
        skipped.append("sweep_curves.png: no member has metrics.jsonl yet")
    return figures, skipped


def _trained_figures(workdir: Path, loaded: LoadedModel) -> tuple[dict[str, Figure], list[str]]:
    """(figures by file stem, one line per picture that does not apply, saying why) of the run
    in `workdir`, restored as `loaded`."""
    figures: dict[str, Figure] = {}
    skipped = []
    name = loaded.config.model.name
    metrics = rundir.read_metrics(workdir)
    if metrics:
        figures["loss"] = loss_figure(
            metrics, f"{loaded.config_name} ({name}), {loaded.step} steps"
        )
    else:
        skipped.append("loss.png: the workdir has no metrics.jsonl")
    bigram = bigram_figure_of(loaded)
    if bigram is not None:
        figures["bigram"] = bigram
    else:
        skipped.append(f"bigram.png: model {name} is not a fitted count table")
    embedding = embedding_figure_of(loaded)
    if embedding is not None:
        figures["embedding"] = embedding
    else:
        skipped.append(f"embedding.png: model {name} has no character embedding table")
    rows = rundir.read_diagnostics(workdir)
    if rows:
        figures["activations"] = activations_figure(rows)
        figures["updates"] = updates_figure(rows)
    else:
        skipped.append(
            "activations.png, updates.png: the run was trained without --config.log_diagnostics=True"
        )
    return figures, skipped


def run_figures(workdir: str | Path, loaded: LoadedModel | None = None) -> dict[str, Figure]:
    """Every picture the run in `workdir` supports, by file stem: "loss", "bigram", "embedding",
    "activations", "updates" (those that apply), or "sweep", "sweep_curves" for a sweep's
    workdir. `loaded` (`restore.load_trained(workdir)`) saves restoring the checkpoint again."""
    require_matplotlib()
    workdir = Path(workdir)
    if rundir.is_sweep_dir(workdir):
        return _sweep_figures(workdir)[0]
    if loaded is None:
        from jax_makemore.restore import load_trained

        loaded = load_trained(workdir)
    return _trained_figures(workdir, loaded)[0]


def sweep_figures(workdir: str | Path) -> dict[str, Figure]:
    """The pictures of a sweep workdir (one with sweep.json) by file stem: "sweep" (val loss
    against each swept key, once a member has a val loss) and "sweep_curves" (every member's
    loss curves, once a member has metrics)."""
    require_matplotlib()
    return _sweep_figures(Path(workdir))[0]


def save_figures(figures: dict[str, Figure], out: Path, dpi: int | None) -> list[Path]:
    """Each figure saved as `out/<stem>.png`, at `dpi` or the picture's default resolution."""
    return [
        save_figure(fig, out / f"{stem}.png", DEFAULT_DPI.get(stem, 100) if dpi is None else dpi)
        for stem, fig in figures.items()
    ]


def plot_sweep(
    workdir: str | Path, out: str | Path | None = None, dpi: int | None = None
) -> tuple[list[Path], list[str]]:
    """The pictures of a sweep workdir (one with sweep.json): `sweep.png` (val loss against
    each swept key) and `sweep_curves.png` (every member's loss curves). The members' own
    pictures: `plot --workdir DIR/members/NAME`."""
    workdir = Path(workdir)
    figures, skipped = _sweep_figures(workdir)
    return save_figures(figures, output_dir(workdir, out), dpi), skipped


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
    """Write every picture the run in `workdir` supports (`run_figures`) into `out` (default:
    the workdir); `dpi` overrides each picture's default resolution. Returns (written paths, one
    line per picture that does not apply to this run, saying why)."""
    from jax_makemore.restore import load_trained

    require_matplotlib()  # fail early and clearly without matplotlib
    workdir = Path(workdir)
    if rundir.is_sweep_dir(workdir):  # a sweep's workdir (python -m jax_makemore.sweep)
        return plot_sweep(workdir, out, dpi)
    loaded = load_trained(workdir)
    out = output_dir(workdir, out)
    figures, skipped = _trained_figures(workdir, loaded)
    return save_figures(figures, out, dpi), skipped


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
