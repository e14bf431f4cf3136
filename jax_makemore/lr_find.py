"""`python -m jax_makemore.lr_find --config NAME [--config.KEY=VALUE ...]`: the second
lecture's learning-rate search.

One short run whose learning rate grows exponentially from `--min_lr` to `--max_lr` over
`--num_steps` steps, using the config's model, batch and optimizer (the train step of train.py,
with the optimizer's update multiplied by the sweep's rate). `--repeats` runs with different
init and data keys go side by side under `jax.vmap` in one compiled scan, and their mean loss is
smoothed; the suggested learning rate is the one at the bottom of that smoothed curve. Writes
`lr_find.png` (loss against log10 learning rate) into `--out` and prints the suggestion.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jax_makemore import config as config_lib
from jax_makemore.batches import packing_from_config
from jax_makemore.data import Dataset, dataset_from_config
from jax_makemore.errors import UserError, run_cli
from jax_makemore.models import ModelSpec, get_spec
from jax_makemore.optim import build_optimizer
from jax_makemore.train import TrainState, create_train_state, train_step_from_config


@dataclasses.dataclass
class LRFindResult:
    lrs_S: np.ndarray  # learning rate of each step
    losses_RxS: np.ndarray  # loss of each repeat at each step (NaN/inf once diverged)
    smoothed_S: np.ndarray  # centred moving average of the mean loss (inf once diverged)
    suggested_lr: float


def sweep_learning_rates(min_lr: float, max_lr: float, num_steps: int) -> np.ndarray:
    """`num_steps` learning rates spaced exponentially from min_lr to max_lr (both included)."""
    return np.logspace(np.log10(min_lr), np.log10(max_lr), num_steps)


def smooth(losses_S: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` steps (the finite losses in it); inf from the first
    non-finite loss on, so a diverged run never looks like a minimum."""
    losses_S = np.asarray(losses_S, np.float64)
    bad = ~np.isfinite(losses_S)
    first_bad = int(np.argmax(bad)) if bad.any() else len(losses_S)
    csum = np.concatenate([[0.0], np.cumsum(np.where(bad, 0.0, losses_S))])
    ccount = np.concatenate([[0], np.cumsum(~bad)])
    idx = np.arange(len(losses_S))
    lo = np.maximum(idx - window // 2, 0)
    hi = np.minimum(idx + (window + 1) // 2, len(losses_S))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[hi] - csum[lo]) / (ccount[hi] - ccount[lo])
    out[first_bad:] = np.inf
    return out


def suggest(lrs_S: np.ndarray, smoothed_S: np.ndarray) -> float:
    """The learning rate at the lowest point of the smoothed loss (the lecture's 'valley')."""
    if not np.isfinite(smoothed_S).any():
        raise UserError("every loss of the sweep was NaN or infinite; lower --min_lr")
    return float(lrs_S[int(np.argmin(smoothed_S))])


def lr_find_step(
    config: ml_collections.ConfigDict, model: nn.Module, spec: ModelSpec, ds: Dataset
) -> Callable:
    """The train step the search runs: train's for `config` (`train.train_step_from_config`),
    on the packed rows of a packed sequence model as train draws them, on one device."""
    packing = packing_from_config(config, ds.split("train")[1], ds.seq_len)
    return train_step_from_config(config, model, spec, packing)


def lr_find(
    config: ml_collections.ConfigDict,
    min_lr: float = 1e-3,
    max_lr: float = 1.0,
    num_steps: int = 1000,
    repeats: int = 4,
    window: int | None = None,
) -> LRFindResult:
    """Run the sweep for `config` (see the module docstring)."""
    if not 0 < min_lr < max_lr:
        raise UserError(f"need 0 < --min_lr < --max_lr, got {min_lr} and {max_lr}")
    if num_steps < 2 or repeats < 1:
        raise UserError(f"need --num_steps >= 2 and --repeats >= 1, got {num_steps}, {repeats}")
    spec = get_spec(config.model.name)
    if spec.fit is not None:
        raise UserError(
            f"model {config.model.name} is fitted in closed form; there is no learning rate"
        )
    ds = dataset_from_config(config)
    model = spec.build(config.model, ds.vocab.size, ds.seq_len)
    X_train, Y_train = (jnp.asarray(a) for a in ds.split("train"))
    lrs_S = sweep_learning_rates(min_lr, max_lr, num_steps)

    # the config's optimizer at a constant rate 1, its update then scaled by the sweep's rate
    constant = config.copy_and_resolve_references()
    with constant.unlocked():
        constant.learning_rate, constant.lr_decay_factor = 1.0, 1.0
    lrs_dev = jnp.asarray(lrs_S, jnp.float32)

    def init(key: jax.Array) -> TrainState:
        init_key, data_key = jax.random.split(key)
        state = create_train_state(config, model, init_key, data_key, ds.seq_len)
        tx = optax.chain(
            build_optimizer(constant, state.params),
            optax.scale_by_schedule(lambda count: lrs_dev[jnp.minimum(count, num_steps - 1)]),
        )
        return state.replace(tx=tx, opt_state=tx.init(state.params))

    train_step = lr_find_step(config, model, spec, ds)

    def run(key: jax.Array) -> jax.Array:
        state = init(key)
        _, losses_S = jax.lax.scan(
            lambda s, _: train_step(s, X_train, Y_train), state, None, length=num_steps
        )
        return losses_S

    keys_R = jax.random.split(jax.random.PRNGKey(config.seed), repeats)
    losses_RxS = np.asarray(jax.jit(jax.vmap(run))(keys_R))
    window = window or max(num_steps // 20, 1)
    with np.errstate(invalid="ignore"):
        mean_S = losses_RxS.mean(axis=0)
    smoothed_S = smooth(mean_S, window)
    return LRFindResult(lrs_S, losses_RxS, smoothed_S, suggest(lrs_S, smoothed_S))


def lr_find_figure(result: LRFindResult, title: str) -> Any:
    """Loss against log10 learning rate: each repeat, the smoothed mean, and the suggestion,
    as a `matplotlib.figure.Figure` (no pyplot, so no backend is chosen or switched)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    x_S = np.log10(result.lrs_S)
    for r, losses_S in enumerate(result.losses_RxS):
        ax.plot(
            x_S, losses_S, lw=0.5, alpha=0.35, color="tab:blue", label="runs" if r == 0 else None
        )
    finite = np.isfinite(result.smoothed_S)
    ax.plot(x_S[finite], result.smoothed_S[finite], lw=2, color="tab:orange", label="smoothed mean")
    best = np.log10(result.suggested_lr)
    ax.axvline(best, color="tab:red", ls="--", label=f"suggested lr {result.suggested_lr:.3g}")
    start = np.nanmedian(result.losses_RxS[:, : max(len(x_S) // 50, 1)])
    low = np.nanmin(np.where(np.isfinite(result.losses_RxS), result.losses_RxS, np.nan))
    if np.isfinite(start) and np.isfinite(low):
        ax.set_ylim(low - 0.05 * (start - low), start + 0.25 * (start - low))
    ax.set_xlabel("log10(learning rate)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def plot_lr_find(result: LRFindResult, path: Path, title: str, dpi: int = 100) -> Path:
    """`lr_find_figure` saved as a PNG at `path`."""
    from jax_makemore.plot import save_figure

    return save_figure(lr_find_figure(result, title), path, dpi)


def main(argv: Sequence[str]) -> int:
    argv, overrides = config_lib.split_config_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.lr_find",
        description="Sweep the learning rate exponentially and suggest one.",
    )
    parser.add_argument("--config", required=True, help="config name or path to a .py config")
    parser.add_argument("--min_lr", type=float, default=1e-3)
    parser.add_argument("--max_lr", type=float, default=1.0)
    parser.add_argument("--num_steps", type=int, default=1000, help="steps of the sweep")
    parser.add_argument("--repeats", type=int, default=4, help="runs averaged (under jax.vmap)")
    parser.add_argument("--out", default=None, help="folder for lr_find.png; default runs/<config>")
    args = parser.parse_args(argv)
    config, name = config_lib.resolve(args.config, overrides)
    result = lr_find(config, args.min_lr, args.max_lr, args.num_steps, args.repeats)
    out = Path(args.out or Path("runs") / name)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    title = (
        f"{name}: lr {args.min_lr:g} -> {args.max_lr:g} over {args.num_steps} steps, "
        f"{args.repeats} runs"
    )
    try:
        path = plot_lr_find(result, out / "lr_find.png", title)
        print(f"wrote {path}", file=sys.stderr)
    except UserError as err:  # no matplotlib: still print the suggestion
        print(f"no picture: {err}", file=sys.stderr)
    print(f"suggested learning rate: {result.suggested_lr:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
