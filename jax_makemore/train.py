"""`python -m jax_makemore.train --config NAME|PATH [--workdir DIR] [--config.KEY=VALUE ...]`.

Reads top to bottom like the Flax examples: `create_train_state`, `make_train_step` (one pure
step), `make_train_chunk` (a jit-compiled chunk of steps inside one `lax.scan`), and
`train_and_evaluate`, which drives them: it evaluates, checkpoints, logs `metrics.jsonl` and
writes `results.json`. Workdir policy, logging and signals live in `run.py`; the loss and
evaluation in `loss.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn
from flax.training import train_state

from jax_makemore import checkpoint as ckpt
from jax_makemore import config as config_lib
from jax_makemore import diagnostics, parallel, run
from jax_makemore.data import SPLITS, Dataset, dataset_from_config
from jax_makemore.errors import DivergedError, Interrupted, UserError, run_cli
from jax_makemore.loss import evaluate_loss, make_eval_step, mean_nll
from jax_makemore.models import ModelSpec, get_spec, input_length
from jax_makemore.optim import build_optimizer, learning_rate_schedule
from jax_makemore.restore import variables_of
from jax_makemore.sample import default_max_len, generate, label_words


class TrainState(train_state.TrainState):
    """Flax's TrainState plus BatchNorm running statistics and the key batches are drawn from."""

    batch_stats: Any
    data_key: jax.Array


def create_train_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    init_key: jax.Array,
    data_key: jax.Array,
    seq_len: int,
) -> TrainState:
    """Initialise params (and batch_stats) from `init_key` and the optax chain from the config."""
    dummy_BxT = jnp.zeros((2, input_length(config.model, seq_len)), jnp.int32)
    variables = model.init(init_key, dummy_BxT, train=False)
    params = variables["params"]
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=build_optimizer(config, params),
        batch_stats=variables.get("batch_stats", {}),
        data_key=data_key,
    )


def autodiff_loss_and_grads(model: nn.Module, measure: bool = False) -> Callable:
    """`(params, batch_stats, X_BxT, Y_B, dropout_key) -> (loss, grads, updates)` by
    `jax.value_and_grad` of the masked mean NLL; `updates` holds the new batch_stats (and the
    sown intermediates when `measure`)."""
    mutable = ["batch_stats", "intermediates"] if measure else ["batch_stats"]

    def loss_and_grads(params, batch_stats, X_BxT, Y_B, dropout_key):
        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": batch_stats},
                X_BxT,
                train=True,
                mutable=mutable,
                rngs={"dropout": dropout_key},
            )
            return mean_nll(logits, Y_B), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, grads, updates

    return loss_and_grads


def make_train_step(
    model: nn.Module,
    *,
    batch_size: int,
    full_batch: bool = False,
    measure: bool = False,
    mesh: jax.sharding.Mesh | None = None,
    spec: ModelSpec | None = None,
) -> Callable:
    """The pure step `(state, X, Y) -> (state, loss)`; the batch (and the dropout key) come
    from `fold_in(state.data_key, state.step)`, so a resumed run draws the same batches.
    With `measure` it returns `(state, (loss, diagnostics))` (diagnostics.measure): the chunk
    uses such a step for its first step only. A spec with `loss_and_grads` supplies its own
    gradient (no diagnostics of intermediates then)."""
    autodiff = autodiff_loss_and_grads(model, measure)

    def train_step(state: TrainState, X: jax.Array, Y: jax.Array):
        key = jax.random.fold_in(state.data_key, state.step)
        if full_batch:
            X_B, Y_B = X, Y
        else:
            idx_B = jax.random.randint(key, (batch_size,), 0, X.shape[0])
            X_B, Y_B = X[idx_B], Y[idx_B]
        # with a mesh: each device computes its slice of the global batch (parallel.py)
        X_B, Y_B = parallel.shard_batch(X_B, mesh), parallel.shard_batch(Y_B, mesh)
        if spec is not None and spec.loss_and_grads is not None:
            loss, grads, batch_stats = spec.loss_and_grads(
                model, state.params, state.batch_stats, X_B, Y_B
            )
            updates = {"batch_stats": batch_stats}
        else:
            dropout_key = jax.random.fold_in(key, 1)
            loss, grads, updates = autodiff(state.params, state.batch_stats, X_B, Y_B, dropout_key)
        new_state = state.apply_gradients(
            grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats)
        )
        if measure:
            inter = updates.get("intermediates", {})
            return new_state, (
                loss,
                diagnostics.measure(state.params, new_state.params, grads, inter),
            )
        return new_state, loss

    return train_step


def make_train_chunk(
    model: nn.Module,
    *,
    batch_size: int,
    num_steps: int,
    full_batch: bool = False,
    measure_first: bool = False,
    mesh: jax.sharding.Mesh | None = None,
    spec: ModelSpec | None = None,
) -> Callable:
    """`num_steps` train steps fused into one compiled `lax.scan`; the state buffers are donated.
    Returns the new state and the per-step losses_K (one host transfer per chunk), paired with
    the diagnostics of the chunk's first step when `measure_first`."""
    common = dict(batch_size=batch_size, full_batch=full_batch, mesh=mesh, spec=spec)
    train_step = make_train_step(model, **common)
    first = make_train_step(model, measure=True, **common) if measure_first else None

    def chunk(state: TrainState, X: jax.Array, Y: jax.Array):
        def steps(state: TrainState, length: int):
            return jax.lax.scan(lambda s, _: train_step(s, X, Y), state, None, length=length)

        if first is None:
            return steps(state, num_steps)
        # the first step measures, the rest are plain steps (no per-step branch)
        state, (loss, diag) = first(state, X, Y)
        state, losses = steps(state, num_steps - 1)
        return state, (jnp.concatenate([loss[None], losses]), diag)

    if mesh is not None:  # explicit in/out shardings over the devices of the mesh
        return parallel.jit_chunk(chunk, mesh)
    return jax.jit(chunk, donate_argnums=0)


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
class Run:
    """Everything one training run holds: the data, the model, the state and where it goes."""

    config: ml_collections.ConfigDict
    config_name: str
    workdir: Path
    spec: ModelSpec
    ds: Dataset
    model: nn.Module
    state: TrainState
    X_train: jax.Array
    Y_train: jax.Array
    mesh: jax.sharding.Mesh
    manager: Any
    start: int
    sample_key: jax.Array

    def variables(self) -> dict[str, Any]:
        """This process's copy of the model's variables (params and running statistics)."""
        return parallel.local_copy(variables_of(self.state.params, self.state.batch_stats))

    def save(self) -> None:
        ckpt.save(
            self.manager,
            int(self.state.step),
            self.state,
            self.config,
            self.config_name,
            self.ds.vocab,
            self.ds.seq_len,
        )


def start_run(
    config: ml_collections.ConfigDict,
    config_name: str,
    workdir: Path,
    resume: bool,
    overwrite: bool,
) -> Run:
    """Prepare the workdir, load the data, build the model and its state (fitted, fresh or
    restored from the workdir's checkpoint), placed on the mesh."""
    spec = get_spec(config.model.name)
    mesh = parallel.make_mesh(config.num_devices)
    if spec.fit is None and not config.full_batch:
        parallel.check_batch_size(config.batch_size, mesh)
    resuming = parallel.on_primary(lambda: run.prepare_workdir(workdir, resume, overwrite))
    ds = dataset_from_config(config)
    model = spec.build(config.model, ds.vocab.size, ds.seq_len)
    init_key, data_key, sample_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    state = create_train_state(config, model, init_key, data_key, ds.seq_len)
    X_train, Y_train = (jnp.asarray(a) for a in ds.split("train"))  # device-resident for the run
    if spec.fit is not None:  # fitted in closed form, no gradient steps
        state = state.replace(params=spec.fit(config.model, X_train, Y_train, ds.vocab.size))
        config.num_steps = 0
    # replicated on every device of the mesh; a restored state keeps these shardings
    state, X_train, Y_train = parallel.replicate((state, X_train, Y_train), mesh)
    manager = ckpt.make_manager(workdir, keep=config.keep_checkpoints)
    if resuming:
        meta = ckpt.restore_meta(workdir)
        run.check_resumable(meta.config, config, workdir)
        if meta.vocab != ds.vocab:
            raise UserError(
                f"checkpoint in '{workdir}' has a different vocabulary than '{config.data_path}'"
            )
        state = ckpt.restore_state(workdir, meta.step, target=state)
    return Run(
        config, config_name, workdir, spec, ds, model, state, X_train, Y_train, mesh, manager,
        int(state.step), sample_key,
    )  # fmt: skip


def evaluate_splits(r: Run, eval_step: Callable) -> dict[str, float | None]:
    variables = r.variables()
    return {
        s: evaluate_loss(eval_step, variables, *r.ds.split(s), r.config.eval_batch_size)
        for s in SPLITS
    }


def check_divergence(losses_K: np.ndarray, step: int, r: Run) -> None:
    """Stop with DivergedError when a loss of the chunk that started at `step` is NaN, inf or
    above `divergence_loss`; the last checkpoint stays."""
    diverged_K = ~np.isfinite(losses_K) | (losses_K > r.config.divergence_loss)
    if not diverged_K.any():
        return
    first = int(np.argmax(diverged_K))
    last = r.manager.latest_step()
    kept = (
        f"checkpoint {last} in '{r.workdir}' is kept"
        if last is not None
        else "no checkpoint was written"
    )
    raise DivergedError(
        f"training diverged: the loss became {losses_K[first]:.4g} at step {step + first + 1} "
        f"(learning_rate={r.config.learning_rate}, divergence_loss={r.config.divergence_loss}); {kept}"
    )


def train_chunks(r: Run, logger: Any) -> tuple[float, float, dict[str, float | None] | None]:
    """Run the compiled chunks from `r.start` to `num_steps`: log, evaluate, checkpoint at their
    ends, stop on divergence or a signal (Interrupted, after a checkpoint). Returns (compile
    seconds, train seconds, the split losses of the last evaluation, or None when none ran)."""
    config = r.config
    every = diagnostics.every_from_config(config)  # 0: off
    periods = (config.steps_per_call, config.eval_every, config.checkpoint_every)
    schedule = learning_rate_schedule(config)
    eval_step = make_eval_step(r.model)
    compiled: dict[int, Any] = {}
    compile_seconds = train_seconds = 0.0
    step, split_loss = r.start, None
    with run.StopFlag() as stop:
        for end in chunk_ends(r.start, config.num_steps, periods + ((every,) if every else ())):
            k = end - step
            if k not in compiled:
                t0 = time.perf_counter()
                fn = make_train_chunk(
                    r.model, batch_size=config.batch_size, num_steps=k,
                    full_batch=config.full_batch, measure_first=bool(every), mesh=r.mesh,
                    spec=r.spec,
                )  # fmt: skip
                compiled[k] = fn.lower(r.state, r.X_train, r.Y_train).compile()
                compile_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            r.state, out = compiled[k](r.state, r.X_train, r.Y_train)
            if every:
                out, diag = jax.device_get(out)
                if step % every == 0:  # chunks also end at these multiples
                    diagnostics.append_records(r.workdir, [diagnostics.record(diag, step)])
            losses_K = np.asarray(out)  # the one host sync per chunk
            dt = time.perf_counter() - t0
            train_seconds += dt
            check_divergence(losses_K, step, r)
            step = end
            record = {
                "step": step,
                "loss": float(losses_K.mean()),
                "lr": float(schedule(step - 1)),
                "steps_per_sec": k / dt,
            }
            if step % config.eval_every == 0 or step == config.num_steps:
                record["split_loss"] = split_loss = evaluate_splits(r, eval_step)
                shown = "  ".join(
                    f"{s} {v:.4f}" for s, v in record["split_loss"].items() if v is not None
                )
                logger.info(f"step {step}: {shown}")
            logger.write(record)
            logger.progress(step, record["loss"], record["steps_per_sec"])
            if step % config.checkpoint_every == 0 or step == config.num_steps:
                r.save()
            if parallel.any_process(stop.signum is not None):
                signum = stop.signum or signal.SIGTERM  # a peer process got the signal
                if r.manager.latest_step() != step:
                    r.save()
                name = signal.Signals(signum).name
                logger.info(
                    f"{name}: saved checkpoint at step {step} in '{r.workdir}'; continue with --resume"
                )
                raise Interrupted(int(signum))
    return compile_seconds, train_seconds, split_loss


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    config_name: str,
    workdir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Train `config` in `workdir`, evaluate every split, checkpoint, and return results.json
    (with `samples` when `num_samples`, default config.num_samples, is > 0). A SIGINT/SIGTERM
    raises `Interrupted` after saving a checkpoint that `resume=True` continues."""
    t_start = time.perf_counter()
    r = start_run(config, config_name, Path(workdir), resume, overwrite)
    logger = (
        run.Logger(r.workdir, config.num_steps, r.start, append=resume)
        if parallel.is_primary()
        else run.NullLogger()
    )
    try:
        compile_seconds, train_seconds, split_loss = train_chunks(r, logger)
        if r.manager.latest_step() != int(r.state.step):  # e.g. a fitted model, which takes no step
            r.save()
        if split_loss is None:  # no chunk ran (a fitted model, or resumed at the end)
            split_loss = evaluate_splits(r, make_eval_step(r.model))
    finally:
        logger.close()
    steps_run = int(r.state.step) - r.start
    results = {
        "config": config_name,
        "model": config.model.name,
        "num_params": num_params(r.state.params),
        "steps": int(r.state.step),
        "loss": split_loss,
        "wall_seconds": time.perf_counter() - t_start,
        "compile_seconds": compile_seconds,
        "steps_per_sec": steps_run / train_seconds if train_seconds > 0 else 0.0,
    }
    if parallel.is_primary():
        run.write_json_atomic(r.workdir / "results.json", results)
    n = config.num_samples if num_samples is None else num_samples
    if n > 0:
        words = generate(
            r.model, r.variables(), r.ds.vocab, r.sample_key, n,
            layout=r.spec.layout, input_len=input_length(config.model, r.ds.seq_len),
            max_len=default_max_len(r.ds.longest_word),
        )  # fmt: skip
        labels = label_words(words, set(r.ds.words[0]), set(r.ds.words[1]) | set(r.ds.words[2]))
        results["samples"] = list(zip(words, labels, strict=True))
    return results


HELP_EPILOG = """\
config keys:
  --config.KEY=VALUE     set any key of the config (typed by its default), e.g.
                         --config.num_steps=1000 --config.learning_rate=0.05
  --config.model.KEY=V   set a hyper-parameter of the model, e.g. --config.model.n_hidden=100;
                         --config.model.name=NAME switches the model (to its defaults)
  Every key and its default: python -m jax_makemore.train --config NAME --print_config
  (the top-level keys are documented in base_config() in jax_makemore/config.py, a model's
  keys in its file under jax_makemore/models/).
"""


def main(argv: Sequence[str]) -> int:
    argv, overrides = config_lib.split_config_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.train",
        description="Train a jax_makemore model.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument(
        "--print_config",
        action="store_true",
        help="print the resolved config (overrides applied) and exit without training",
    )
    parallel.add_flags(parser)
    args = parser.parse_args(argv)
    config, name = config_lib.resolve(args.config, overrides)
    if args.print_config:
        sys.stdout.write(str(config))
        return 0
    parallel.initialize_from_flags(args)  # before anything touches a device
    workdir = Path(args.workdir or Path("runs") / name)
    try:
        results = train_and_evaluate(
            config, name, workdir, resume=args.resume, overwrite=args.overwrite
        )
    except Interrupted as stop:
        return 128 + stop.signum
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
