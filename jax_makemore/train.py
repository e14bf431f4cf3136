"""`python -m jax_makemore.train --config NAME|PATH [--workdir DIR] [--config.KEY=VALUE ...]`.

Reads top to bottom like the Flax examples: `create_train_state`, `make_train_chunk` (a pure,
jit-compiled chunk of `steps_per_call` train steps inside one `lax.scan`), `make_eval_step`, and
`train_and_evaluate`, which drives them, checkpoints, logs `metrics.jsonl` and writes
`results.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

from jax_makemore import checkpoint as ckpt
from jax_makemore import config as config_lib
from jax_makemore import diagnostics, parallel
from jax_makemore.data import Dataset, Vocab, dataset_from_config, read_words, split_words
from jax_makemore.errors import DivergedError, UserError, run_cli
from jax_makemore.models import build_model
from jax_makemore.models.bigram import count_table, fit_log_probs
from jax_makemore.optim import build_optimizer, learning_rate_schedule
from jax_makemore.sample import generate, label_words

#: Keys that fix the shape of the model or the data; a checkpoint only resumes when they match.
IDENTITY_KEYS = (
    "model",
    "block_size",
    "n_embd",
    "n_hidden",
    "use_batchnorm",
    "data_path",
    "seed",
    "split_fractions",
)


class TrainState(train_state.TrainState):
    """Flax's TrainState plus BatchNorm running statistics and the key batches are drawn from."""

    batch_stats: Any
    data_key: jax.Array


def cross_entropy(logits_BxV: jax.Array, Y_B: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of the targets."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxV, Y_B).mean()


def create_train_state(
    config: ml_collections.ConfigDict, model: nn.Module, init_key: jax.Array, data_key: jax.Array
) -> TrainState:
    """Initialise params (and batch_stats) from `init_key` and the optax chain from the config."""
    dummy_BxT = jnp.zeros((2, config.block_size), jnp.int32)
    variables = model.init(init_key, dummy_BxT, train=False)
    params = variables["params"]
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=build_optimizer(config, params),
        batch_stats=variables.get("batch_stats", {}),
        data_key=data_key,
    )


def make_train_step(
    model: nn.Module,
    batch_size: int,
    full_batch: bool,
    diagnostics_every: int = 0,
    mesh: jax.sharding.Mesh | None = None,
):
    """The pure step `(state, X_NxT, Y_N) -> (state, loss)`; the batch comes from
    `fold_in(state.data_key, state.step)`, so a resumed run draws the same batches.
    With `diagnostics_every > 0` it returns `(state, (loss, diagnostics))`: the step measures
    (diagnostics.measure), so the chunk uses it for its first step only."""
    collect = diagnostics.measure if diagnostics_every else None

    def train_step(state: TrainState, X_NxT: jax.Array, Y_N: jax.Array):
        if full_batch:
            X_BxT, Y_B = X_NxT, Y_N
        else:
            key = jax.random.fold_in(state.data_key, state.step)
            idx_B = jax.random.randint(key, (batch_size,), 0, X_NxT.shape[0])
            X_BxT, Y_B = X_NxT[idx_B], Y_N[idx_B]
        # with a mesh: each device computes its slice of the global batch (parallel.py)
        X_BxT, Y_B = parallel.shard_batch(X_BxT, mesh), parallel.shard_batch(Y_B, mesh)

        def loss_fn(params):
            logits_BxV, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                X_BxT,
                train=True,
                mutable=["batch_stats", "intermediates"] if collect else ["batch_stats"],
            )
            return cross_entropy(logits_BxV, Y_B), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(
            grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats)
        )
        if collect:
            inter = updates.get("intermediates", {})
            diag = collect(state.params, new_state.params, grads, inter)
            return new_state, (loss, diag)
        return new_state, loss

    return train_step


def make_train_chunk(
    model: nn.Module,
    batch_size: int,
    full_batch: bool,
    num_steps: int,
    diagnostics_every: int = 0,
    mesh: jax.sharding.Mesh | None = None,
):
    """`num_steps` train steps fused into one compiled `lax.scan`; the state buffers are donated.
    Returns the new state and the per-step losses_K (one host transfer per chunk), paired with
    the diagnostics of the chunk's first step when `diagnostics_every > 0`."""
    train_step = make_train_step(model, batch_size, full_batch, 0, mesh)
    # diagnostics: the first step measures, the rest are plain steps (no per-step branch)
    first = make_train_step(model, batch_size, full_batch, diagnostics_every, mesh)

    def chunk(state: TrainState, X_NxT: jax.Array, Y_N: jax.Array):
        def steps(state: TrainState, length: int):
            return jax.lax.scan(lambda s, _: train_step(s, X_NxT, Y_N), state, None, length=length)

        if not diagnostics_every:
            return steps(state, num_steps)
        state, (loss, diag) = first(state, X_NxT, Y_N)
        state, losses = steps(state, num_steps - 1)
        return state, (jnp.concatenate([loss[None], losses]), diag)

    if mesh is not None:  # explicit in/out shardings over the devices of the mesh
        return parallel.jit_chunk(chunk, mesh)
    return jax.jit(chunk, donate_argnums=0)


def make_eval_step(model: nn.Module):
    """`(variables, X_BxT, Y_B, mask_B) -> summed NLL` in eval mode (running stats), jitted."""

    @jax.jit
    def eval_step(variables, X_BxT, Y_B, mask_B):
        logits_BxV = model.apply(variables, X_BxT, train=False)
        nll_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxV, Y_B)
        return jnp.sum(jnp.where(mask_B, nll_B, 0.0))

    return eval_step


def evaluate_loss(
    eval_step, variables: Any, X_NxT: np.ndarray, Y_N: np.ndarray, batch_size: int
) -> float | None:
    """Mean NLL per character over a split (None when empty), in fixed-size padded batches so
    that every split of every size shares one compiled `eval_step`."""
    n = len(Y_N)
    if n == 0:
        return None
    batch_size = min(batch_size, n)
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    X_pad = np.concatenate([X_NxT, np.zeros((pad, X_NxT.shape[1]), X_NxT.dtype)])
    Y_pad = np.concatenate([Y_N, np.zeros((pad,), Y_N.dtype)])
    mask = np.arange(num_batches * batch_size) < n
    sums = [
        eval_step(variables, X_pad[sl], Y_pad[sl], mask[sl])
        for sl in (slice(i * batch_size, (i + 1) * batch_size) for i in range(num_batches))
    ]
    return float(np.sum(jax.device_get(sums), dtype=np.float64) / n)


def variables_of(state: TrainState) -> dict[str, Any]:
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def num_params(params: Any) -> int:
    return int(sum(p.size for p in jax.tree.leaves(params)))


def chunk_ends(start: int, stop: int, every: Sequence[int]) -> list[int]:
    """Steps after `start` at which a chunk ends: multiples of each period in `every`, and `stop`.
    Boundaries depend only on the step number, so a resumed run compiles the same chunks."""
    ends = {stop}
    for period in every:
        ends.update(range((start // period + 1) * period, stop, period))
    return sorted(e for e in ends if start < e <= stop)


@dataclasses.dataclass
class LoadedModel:
    """A trained model restored from a workdir, ready for evaluation and sampling."""

    config: ml_collections.ConfigDict
    config_name: str
    vocab: Vocab
    step: int
    model: nn.Module
    variables: dict[str, Any]
    train_words: set[str] | None
    heldout_words: set[str] | None
    default_max_len: int


def load_trained(workdir: str | Path) -> LoadedModel:
    """Restore the latest checkpoint of `workdir` (params and batch_stats only)."""
    config, name, vocab, step = ckpt.restore_meta(workdir)
    model = build_model(config, vocab.size)
    state = ckpt.restore_state(workdir, step)
    variables = {"params": state["params"]}
    if state.get("batch_stats"):
        variables["batch_stats"] = state["batch_stats"]
    train_words = heldout_words = None
    longest = config.get("max_train_word_length", 30)
    if Path(config.data_path).is_file():
        try:
            splits = split_words(read_words(config.data_path), config.seed, config.split_fractions)
            train_words, heldout_words = set(splits[0]), set(splits[1]) | set(splits[2])
        except UserError:
            pass
    return LoadedModel(
        config, name, vocab, step, model, variables, train_words, heldout_words, longest + 10
    )


class _StopFlag:
    """Records SIGINT/SIGTERM so the loop can checkpoint at the end of the current chunk."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Logger:
    """metrics.jsonl lines, and progress on stderr: a tqdm bar on a terminal, else log lines."""

    def __init__(self, workdir: Path, total: int, start: int, append: bool) -> None:
        self.metrics = open(workdir / "metrics.jsonl", "a" if append else "w", encoding="utf-8")
        self.total, self.last_print = total, start
        self.bar = None
        if sys.stderr.isatty() and total > start:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=start, file=sys.stderr, unit="step", dynamic_ncols=True
            )

    def write(self, record: dict[str, Any]) -> None:
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def progress(self, step: int, loss: float, steps_per_sec: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{steps_per_sec:,.0f}")
        elif step - self.last_print >= max(self.total // 10, 1) or step == self.total:
            print(
                f"step {step}/{self.total}  loss {loss:.4f}  {steps_per_sec:,.0f} steps/s",
                file=sys.stderr,
            )
            self.last_print = step

    def info(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.metrics.close()


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prepare_workdir(workdir: Path, resume: bool, overwrite: bool) -> bool:
    """Create the workdir; returns True when resuming from an existing checkpoint."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"workdir '{workdir}' is a file, not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    try:  # a real write, not os.access: root passes access checks on read-only mounts
        probe = workdir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UserError(f"workdir '{workdir}' is not writable ({err.strerror})") from None
    if ckpt.has_checkpoint(workdir):
        if resume:
            return True
        if not overwrite:
            raise UserError(
                f"workdir '{workdir}' already holds a checkpoint; use --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(ckpt.checkpoint_dir(workdir))
    elif resume:
        raise UserError(f"--resume: workdir '{workdir}' has no checkpoint to resume from")
    for name in ("metrics.jsonl", "results.json", diagnostics.FILENAME):
        (workdir / name).unlink(missing_ok=True)
    return False


def check_resumable(
    saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict, workdir: Path
) -> None:
    for key in IDENTITY_KEYS:
        old, new = saved.get(key), config.get(key)
        if isinstance(old, list | tuple):
            old, new = tuple(old), tuple(new)
        if old != new:
            raise UserError(
                f"checkpoint in '{workdir}' was trained with {key}={old!r} but the flags ask for {key}={new!r}; "
                "use another --workdir or --overwrite"
            )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    config_name: str,
    workdir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Train `config` in `workdir`, evaluate every split, checkpoint, and return results.json."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    mesh = parallel.make_mesh(config.num_devices)
    if config.model != "bigram_counts" and not config.full_batch:
        parallel.check_batch_size(config.batch_size, mesh)
    resuming = parallel.on_primary(lambda: prepare_workdir(workdir, resume, overwrite))
    ds: Dataset = dataset_from_config(config)
    with config.unlocked():
        config.max_train_word_length = max(len(w) for w in ds.words[0])
    vocab = ds.vocab
    model = build_model(config, vocab.size)
    init_key, data_key, sample_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    state = create_train_state(config, model, init_key, data_key)
    X_train, Y_train = (jnp.asarray(a) for a in ds.split("train"))  # device-resident for the run

    if config.model == "bigram_counts":  # fitted by counting, no gradient steps
        counts = count_table(X_train, Y_train, vocab.size)
        state = state.replace(params={"log_probs": fit_log_probs(counts, config.smoothing)})
        config.num_steps = 0

    # replicated on every device of the mesh; a restored state keeps these shardings
    state, X_train, Y_train = parallel.replicate((state, X_train, Y_train), mesh)
    manager = ckpt.make_manager(workdir, keep=config.keep_checkpoints)
    start = 0
    if resuming:
        saved, _, saved_vocab, step = ckpt.restore_meta(workdir)
        check_resumable(saved, config, workdir)
        if saved_vocab != vocab:
            raise UserError(
                f"checkpoint in '{workdir}' has a different vocabulary than '{config.data_path}'"
            )
        state = ckpt.restore_state(workdir, step, target=state)
        start = int(state.step)
    logger = (
        Logger(workdir, config.num_steps, start, append=resuming)
        if parallel.is_primary()
        else parallel.NullLogger()
    )
    schedule = learning_rate_schedule(config)
    eval_step = make_eval_step(model)

    def evaluate_all(state: TrainState) -> dict[str, float | None]:
        variables = parallel.local_copy(variables_of(state))
        return {
            s: evaluate_loss(eval_step, variables, *ds.split(s), config.eval_batch_size)
            for s in ds.SPLITS
        }

    def save(state: TrainState) -> None:
        ckpt.save(manager, int(state.step), state, config, config_name, vocab)

    compiled: dict[int, Any] = {}
    diagnostics_every = diagnostics.every_from_config(config)  # 0: off
    compile_seconds = train_seconds = 0.0
    step = start
    try:
        with _StopFlag() as stop:
            for end in chunk_ends(
                start,
                config.num_steps,
                (config.steps_per_call, config.eval_every, config.checkpoint_every)
                + ((diagnostics_every,) if diagnostics_every else ()),
            ):
                k = end - step
                if k not in compiled:
                    t0 = time.perf_counter()
                    fn = make_train_chunk(
                        model, config.batch_size, config.full_batch, k, diagnostics_every, mesh=mesh
                    )
                    compiled[k] = fn.lower(state, X_train, Y_train).compile()
                    compile_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                state, losses_K = compiled[k](state, X_train, Y_train)
                if diagnostics_every:
                    losses_K, diag = jax.device_get(losses_K)
                    if step % diagnostics_every == 0:  # chunks also end at these multiples
                        diagnostics.append_records(workdir, [diagnostics.record(diag, step)])
                losses_K = np.asarray(losses_K)  # the one host sync per chunk
                dt = time.perf_counter() - t0
                train_seconds += dt
                diverged_K = ~np.isfinite(losses_K) | (losses_K > config.divergence_loss)
                if diverged_K.any():
                    first = int(np.argmax(diverged_K))
                    last = manager.latest_step()
                    kept = (
                        f"checkpoint {last} in '{workdir}' is kept"
                        if last is not None
                        else "no checkpoint was written"
                    )
                    raise DivergedError(
                        f"training diverged: the loss became {losses_K[first]:.4g} at step {step + first + 1} "
                        f"(learning_rate={config.learning_rate}, divergence_loss={config.divergence_loss}); {kept}"
                    )
                step = end
                record = {
                    "step": step,
                    "loss": float(losses_K.mean()),
                    "lr": float(schedule(step - 1)),
                    "steps_per_sec": k / dt,
                }
                if step % config.eval_every == 0 or step == config.num_steps:
                    record["split_loss"] = evaluate_all(state)
                    shown = "  ".join(
                        f"{s} {v:.4f}" for s, v in record["split_loss"].items() if v is not None
                    )
                    logger.info(f"step {step}: {shown}")
                logger.write(record)
                logger.progress(step, record["loss"], record["steps_per_sec"])
                if step % config.checkpoint_every == 0 or step == config.num_steps:
                    save(state)
                if parallel.any_process(stop.signum is not None):
                    signum = stop.signum or signal.SIGTERM  # a peer process got the signal
                    if manager.latest_step() != step:
                        save(state)
                    name = signal.Signals(signum).name
                    logger.info(
                        f"{name}: saved checkpoint at step {step} in '{workdir}'; continue with --resume"
                    )
                    return {"interrupted": int(signum)}
        if manager.latest_step() != int(state.step):  # e.g. the count bigram, which takes no step
            save(state)
        split_loss = evaluate_all(state)
    finally:
        logger.close()

    results = {
        "config": config_name,
        "model": config.model,
        "num_params": num_params(state.params),
        "steps": int(state.step),
        "loss": split_loss,
        "wall_seconds": time.perf_counter() - t_start,
        "compile_seconds": compile_seconds,
        "steps_per_sec": (step - start) / train_seconds if train_seconds > 0 else 0.0,
    }
    if parallel.is_primary():
        write_json_atomic(workdir / "results.json", results)

    n = config.num_samples if num_samples is None else num_samples
    if n > 0:
        words = generate(
            model,
            parallel.local_copy(variables_of(state)),
            vocab,
            config.block_size,
            sample_key,
            n,
            config.max_train_word_length + 10,
        )
        labels = label_words(words, set(ds.words[0]), set(ds.words[1]) | set(ds.words[2]))
        results["samples"] = list(zip(words, labels, strict=True))
    return results


def main(argv: Sequence[str]) -> int:
    argv, overrides = config_lib.split_config_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.train", description="Train a jax_makemore model."
    )
    parser.add_argument(
        "--config", required=True, help="config name (configs/NAME.py) or path to a .py config"
    )
    parser.add_argument("--workdir", default=None, help="default: runs/<config name>")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the workdir's latest checkpoint"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the workdir's checkpoints"
    )
    parallel.add_flags(parser)
    args = parser.parse_args(argv)
    parallel.initialize_from_flags(args)  # before anything touches a device
    config, name = config_lib.resolve(args.config, overrides)
    workdir = Path(args.workdir or Path("runs") / name)
    results = train_and_evaluate(
        config, name, workdir, resume=args.resume, overwrite=args.overwrite
    )
    if "interrupted" in results:
        return 128 + results["interrupted"]
    if not parallel.is_primary():
        return 0
    losses = "  ".join(f"{s} {v:.4f}" for s, v in results["loss"].items() if v is not None)
    print(f"{name}: {results['steps']} steps, {results['num_params']:,} params, loss {losses}")
    print(
        f"wall {results['wall_seconds']:.1f}s (compile {results['compile_seconds']:.1f}s), "
        f"{results['steps_per_sec']:,.0f} steps/s -> {workdir / 'results.json'}"
    )
    for word, label in results.get("samples", []):
        print(f"{word:<20} {label}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
