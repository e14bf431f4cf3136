"""`python -m jax_makemore.train --config NAME|PATH [--workdir DIR] [--config.KEY=VALUE ...]`.

Reads top to bottom like the Flax examples: `create_train_state`, `make_train_step` (one pure
step), `make_train_chunk` (a jit-compiled chunk of steps inside one `lax.scan`), and
`Run`, the program the one training loop (`loop.py`) drives for a single model, and
`train_and_evaluate`. The loop evaluates, checkpoints, logs and writes `results.json`; the
workdir policy lives in `workdir.py`, the logs in `logs.py`, the loss and evaluation in
`loss.py`, the memory check in `memory.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from jax_makemore import diagnostics, memory, parallel
from jax_makemore.batches import Packing, batch_seen, draw_batch, packing_from_config
from jax_makemore.data import SPLITS, Dataset, dataset_from_config
from jax_makemore.errors import DivergedError, Interrupted, run_cli
from jax_makemore.evaluation import EvalWatch, eval_set_from_config
from jax_makemore.logs import NullLog, RunLog, StepProgress
from jax_makemore.loop import ChunkOut, Loop, MemberRun, chunk_ends
from jax_makemore.loss import evaluate_loss, make_eval_step, mean_nll
from jax_makemore.models import ModelSpec, get_spec, input_length
from jax_makemore.optim import averaged_params, build_optimizer, learning_rate_schedule
from jax_makemore.restore import LoadedModel, variables_of
from jax_makemore.sample import label_words, sample_words
from jax_makemore.workdir import WorkdirLock, check_checkpoint, os_errors, prepare_workdir


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
    """`(params, batch_stats, X_BxT, Y_B, dropout_key, extras) -> (loss, grads, updates)` by
    `jax.value_and_grad` of the masked mean NLL; `extras` are the model's keyword inputs (a
    packed row's segments and positions); `updates` holds the new batch_stats (and the sown
    intermediates when `measure`)."""
    mutable = ["batch_stats", "intermediates"] if measure else ["batch_stats"]

    def loss_and_grads(params, batch_stats, X_BxT, Y_B, dropout_key, extras):
        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": batch_stats},
                X_BxT,
                train=True,
                mutable=mutable,
                rngs={"dropout": dropout_key},
                **extras,
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
    packing: Packing | None = None,
    measure: bool = False,
    count_seen: bool = False,
    mesh: jax.sharding.Mesh | None = None,
    spec: ModelSpec | None = None,
) -> Callable:
    """The pure step `(state, X, Y) -> (state, loss)`; the batch (and the dropout key) come
    from `fold_in(state.data_key, state.step)` (batches.draw_batch), so a resumed run draws
    the same batches. With `count_seen` the loss is paired with the words and characters the
    batch trained on (`(loss, seen_2)`); with `measure` that output is paired with
    diagnostics.measure's (the chunk measures its first step only). A spec with
    `loss_and_grads` supplies its own gradient (no diagnostics of intermediates then)."""
    autodiff = autodiff_loss_and_grads(model, measure)

    def train_step(state: TrainState, X: jax.Array, Y: jax.Array):
        key = jax.random.fold_in(state.data_key, state.step)
        X_B, Y_B, extras = draw_batch(
            key, X, Y, batch_size=batch_size, full_batch=full_batch, packing=packing
        )
        # with a mesh: each device computes its slice of the global batch (parallel.py)
        X_B, Y_B, extras = jax.tree.map(lambda a: parallel.shard_batch(a, mesh), (X_B, Y_B, extras))
        if spec is not None and spec.loss_and_grads is not None:
            loss, grads, batch_stats = spec.loss_and_grads(
                model, state.params, state.batch_stats, X_B, Y_B
            )
            updates = {"batch_stats": batch_stats}
        else:
            dropout_key = jax.random.fold_in(key, 1)
            loss, grads, updates = autodiff(
                state.params, state.batch_stats, X_B, Y_B, dropout_key, extras
            )
        new_state = state.apply_gradients(
            grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats)
        )
        out = (loss, batch_seen(Y_B, model.vocab_size - 1, extras)) if count_seen else loss
        if measure:
            inter = updates.get("intermediates", {})
            return new_state, (
                out,
                diagnostics.measure(state.params, new_state.params, grads, inter),
            )
        return new_state, out

    return train_step


def make_train_chunk(
    model: nn.Module,
    *,
    batch_size: int,
    num_steps: int,
    full_batch: bool = False,
    packing: Packing | None = None,
    measure_first: bool = False,
    mesh: jax.sharding.Mesh | None = None,
    spec: ModelSpec | None = None,
) -> Callable:
    """`num_steps` train steps fused into one compiled `lax.scan`; the state buffers are donated.
    Returns the new state and `(losses_K, seen_2)`: the per-step losses and the words and
    characters the K steps trained on (one host transfer per chunk), with the diagnostics of
    the chunk's first step as a third item when `measure_first`."""
    common: dict[str, Any] = dict(
        batch_size=batch_size,
        full_batch=full_batch,
        packing=packing,
        mesh=mesh,
        spec=spec,
        count_seen=True,
    )
    train_step = make_train_step(model, **common)
    first = make_train_step(model, measure=True, **common) if measure_first else None

    def chunk(state: TrainState, X: jax.Array, Y: jax.Array):
        def steps(state: TrainState, length: int):
            state, (losses_K, seen_Kx2) = jax.lax.scan(
                lambda s, _: train_step(s, X, Y), state, None, length=length
            )
            return state, losses_K, jnp.sum(seen_Kx2, axis=0)

        if first is None:
            state, losses_K, seen_2 = steps(state, num_steps)
            return state, (losses_K, seen_2)
        # the first step measures, the rest are plain steps (no per-step branch)
        state, ((loss, seen_2), diag) = first(state, X, Y)
        state, losses_K, rest_2 = steps(state, num_steps - 1)
        return state, (jnp.concatenate([loss[None], losses_K]), seen_2 + rest_2, diag)

    if mesh is not None:  # explicit in/out shardings over the devices of the mesh
        return parallel.jit_chunk(chunk, mesh)
    return jax.jit(chunk, donate_argnums=0)


def step_keywords(
    config: ml_collections.ConfigDict,
    spec: ModelSpec,
    packing: Packing | None,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """The keywords of `make_train_step` and `make_train_chunk` that a config fixes: its batch
    (`batch_size` windows or words, or the whole split with `full_batch`), the packed rows of
    a packed sequence model (`batches.packing_from_config` of its training split), the
    data-parallel mesh and the model's own gradient (`spec`). Every program that trains a
    config (train, sweep, lr_find) builds its step from these."""
    return dict(
        batch_size=config.batch_size,
        full_batch=config.full_batch,
        packing=packing,
        mesh=mesh,
        spec=spec,
    )


def train_step_from_config(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    spec: ModelSpec,
    packing: Packing | None,
    mesh: jax.sharding.Mesh | None = None,
    **options: Any,
) -> Callable:
    """`make_train_step` for `config` (`step_keywords`); `options` are its `measure` and
    `count_seen`."""
    return make_train_step(model, **step_keywords(config, spec, packing, mesh), **options)


def train_chunk_from_config(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    spec: ModelSpec,
    packing: Packing | None,
    mesh: jax.sharding.Mesh | None = None,
    *,
    num_steps: int,
    measure_first: bool = False,
) -> Callable:
    """`make_train_chunk` of `num_steps` steps for `config` (`step_keywords`)."""
    return make_train_chunk(
        model,
        num_steps=num_steps,
        measure_first=measure_first,
        **step_keywords(config, spec, packing, mesh),
    )


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(init_key, data_key, sample_key) of a run with `seed`: the params' initialisation, the
    batches and dropout (`TrainState.data_key`), and the samples printed at the end. A sweep
    member with a seed gets the keys of the single run with that seed."""
    init_key, data_key, sample_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    return init_key, data_key, sample_key


def num_params(params: Any) -> int:
    return int(sum(p.size for p in jax.tree.leaves(params)))


@dataclasses.dataclass
class Run:
    """One training run as the loop's program (loop.Program, one member): the data, the
    model, the state, its compiled chunks and where it is saved."""

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
    sample_key: jax.Array
    packing: Packing | None = None
    step: int = 0
    manager: Any = None
    lock: WorkdirLock | None = None  # held on the workdir while the run trains
    compiled: dict[int, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compile_seconds = 0.0  # of the train chunks, the memory check's included
        self.diagnostics_every = diagnostics.every_from_config(self.config)  # 0: off
        self.schedule = learning_rate_schedule(self.config)
        self.eval_step = make_eval_step(self.model)
        self.eval_set = eval_set_from_config(self.ds, self.config)  # the rows evaluations score

    def variables(self, averaged: bool = False) -> dict[str, Any]:
        """This process's copy of the model's variables (params and running statistics); with
        `averaged`, the moving average of the params (optim.parameter_average) in their place."""
        params = averaged_params(self.state.opt_state) if averaged else self.state.params
        return parallel.local_copy(variables_of(params, self.state.batch_stats))

    def compile(self, k: int) -> None:
        if k not in self.compiled:
            t0 = time.perf_counter()
            fn: Any = train_chunk_from_config(
                self.config,
                self.model,
                self.spec,
                self.packing,
                self.mesh,
                num_steps=k,
                measure_first=bool(self.diagnostics_every),
            )
            self.compiled[k] = fn.lower(self.state, self.X_train, self.Y_train).compile()
            self.compile_seconds += time.perf_counter() - t0

    def chunk(self, k: int) -> ChunkOut:
        self.state, out = self.compiled[k](self.state, self.X_train, self.Y_train)
        out = jax.device_get(out)  # the one host sync per chunk
        records = None
        if self.diagnostics_every and self.step % self.diagnostics_every == 0:
            records = [diagnostics.record(out[2], self.step)]  # chunks also end at multiples
        self.step += k
        return ChunkOut(np.asarray(out[0])[None], records, np.asarray(out[1])[None])

    def evaluate(
        self, averaged: bool = False, watch: EvalWatch | None = None
    ) -> list[dict[str, float | None]]:
        variables, rows, tick = self.variables(averaged), self.config.eval_batch_size, None
        if watch is not None:
            watch.begin(self.eval_set.total_rows)
            tick = watch.tick
        arrays = self.eval_set.arrays
        return [
            {s: evaluate_loss(self.eval_step, variables, *arrays[s], rows, tick) for s in SPLITS}
        ]

    def save(self, indices: Sequence[int]) -> None:
        if indices and self.manager.latest_step() != self.step:
            ckpt.save(
                self.manager,
                self.step,
                self.state,
                config=self.config,
                config_name=self.config_name,
                vocab=self.ds.vocab,
                seq_len=self.ds.seq_len,
            )

    def latest_checkpoint(self, i: int) -> int | None:
        return self.manager.latest_step()

    def learning_rate(self, i: int, step: int) -> float:
        return float(self.schedule(step))


def build_run(config: ml_collections.ConfigDict, config_name: str, workdir: Path) -> Run:
    """The data, the model and its fresh state (fitted, for a closed-form model), placed on the
    mesh; nothing is written yet."""
    spec = get_spec(config.model.name)
    mesh = parallel.make_mesh(config.num_devices)
    if spec.fit is None and not config.full_batch:
        parallel.check_batch_size(config.batch_size, mesh)
    ds = dataset_from_config(config)
    model = spec.build(config.model, ds.vocab.size, ds.seq_len)
    init_key, data_key, sample_key = run_keys(config.seed)
    state = create_train_state(config, model, init_key, data_key, ds.seq_len)
    X_train, Y_train = (jnp.asarray(a) for a in ds.split("train"))  # device-resident for the run
    if spec.fit is not None:  # fitted in closed form, no gradient steps
        state = state.replace(params=spec.fit(config.model, X_train, Y_train, ds.vocab.size))
        config.num_steps = 0
    # replicated on every device of the mesh; a restored state keeps these shardings
    state, X_train, Y_train = parallel.replicate((state, X_train, Y_train), mesh)
    packing = packing_from_config(config, ds.split("train")[1], ds.seq_len, mesh.size)
    return Run(
        config=config,
        config_name=config_name,
        workdir=workdir,
        spec=spec,
        ds=ds,
        model=model,
        state=state,
        X_train=X_train,
        Y_train=Y_train,
        mesh=mesh,
        sample_key=sample_key,
        packing=packing,
    )


def start_run(
    config: ml_collections.ConfigDict,
    config_name: str,
    workdir: Path,
    resume: bool,
    overwrite: bool,
) -> Run:
    """Build the run, check that it fits in memory, then prepare the workdir (nothing in it is
    touched before) and restore the workdir's checkpoint when resuming."""
    r = build_run(config, config_name, workdir)
    start = 0
    with os_errors(workdir):
        if resume and ckpt.has_checkpoint(workdir):
            start = ckpt.restore_meta(workdir).step
    ends = chunk_ends(start, config.num_steps, run_periods(config))
    memory.check_run(r, ends[0] - start if ends else 0)

    def lock_and_prepare() -> bool:  # the lock first: --overwrite must not clear a live run
        r.lock = WorkdirLock(workdir)
        return prepare_workdir(workdir, resume, overwrite)

    try:
        resuming = parallel.on_primary(lock_and_prepare)
        with os_errors(workdir):
            r.manager = ckpt.make_manager(workdir, keep=config.keep_checkpoints)
        if resuming:
            meta = ckpt.restore_meta(workdir)
            check_checkpoint(meta, config, workdir, r.ds.vocab)
            r.state = ckpt.restore_state(workdir, meta.step, target=r.state)
    except BaseException:
        if r.lock is not None:
            r.lock.release()
        raise
    r.step = int(r.state.step)
    return r


def run_periods(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Every period a chunk of a single run ends at (the loop's and the diagnostics')."""
    every = diagnostics.every_from_config(config)
    return (config.steps_per_call, config.eval_every, config.checkpoint_every, every)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    config_name: str,
    workdir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    num_samples: int | None = None,
    progress: str = "auto",
) -> dict[str, Any]:
    """Train `config` in `workdir`, evaluate every split, checkpoint, and return results.json
    (with `samples` when `num_samples`, default config.num_samples, is > 0). A SIGINT/SIGTERM
    raises `Interrupted` after saving a checkpoint that `resume=True` continues; a diverged run
    raises DivergedError. `progress`: see `train_run`."""
    return train_run(config, config_name, workdir, resume, overwrite, num_samples, progress)[1]


def train_run(
    config: ml_collections.ConfigDict,
    config_name: str,
    workdir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    num_samples: int | None = None,
    progress: str = "auto",
) -> tuple[Run, dict[str, Any]]:
    """`train_and_evaluate`, returning the trained `Run` (its state in memory) with the
    results. `progress`: "auto" (a tqdm bar on a terminal's stderr, else a line every tenth of
    the run), "notebook" (tqdm.auto: a widget in Jupyter) or "off" (only warnings)."""
    t_start = time.perf_counter()
    r = start_run(config, config_name, Path(workdir), resume, overwrite)
    with r.lock or contextlib.nullcontext():  # released however the run ends
        primary = parallel.is_primary()
        log = (
            RunLog(r.workdir, r.step if resume else None, config.tensorboard)
            if primary
            else NullLog()
        )
        shown = StepProgress(config.num_steps, r.step, progress) if primary else NullLog()
        member = MemberRun(r.workdir, config, log)
        loop = Loop(
            program=r,
            members=[member],
            config=config,
            progress=shown,
            results_base={"config": config_name, "num_params": num_params(r.state.params)},
            extra_periods=(r.diagnostics_every,),
            compile_seconds=lambda: r.compile_seconds,
            t_start=t_start,
        )
        try:
            loop.run()
            if member.status == "diverged":
                raise DivergedError(member.error)
            results = dict(member.results or {})
            n = config.num_samples if num_samples is None else num_samples
            if n > 0:
                results["samples"] = final_samples(r, n)
                log.samples([w for w, _ in results["samples"]], r.step)
        finally:
            shown.close()
            log.close()
    return r, results


def trained_model(r: Run) -> LoadedModel:
    """The run's model as `restore.load_trained` would give it back from the workdir: the
    averaged params when the run keeps an average, the split's words for the labels."""
    ds = r.ds
    return LoadedModel(
        config=r.config,
        config_name=r.config_name,
        vocab=ds.vocab,
        step=r.step,
        seq_len=ds.seq_len,
        spec=r.spec,
        model=r.model,
        variables=r.variables(averaged=r.config.ema_decay > 0),
        train_words=set(ds.words[0]),
        heldout_words=set(ds.words[1]) | set(ds.words[2]),
    )


def final_samples(r: Run, n: int) -> list[tuple[str, str]]:
    """`n` words from the trained model, each labelled new / in train / in val/test."""
    trained = trained_model(r)
    words = sample_words(trained, r.sample_key, n)
    labels = label_words(words, trained.train_words or set(), trained.heldout_words or set())
    return list(zip(words, labels, strict=True))


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
        "--config",
        required=True,
        help="config name (jax_makemore/configs/NAME.py) or path to a .py config",
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
    if "loss_ema" in results:
        averaged = "  ".join(
            f"{s} {v:.4f}" for s, v in results["loss_ema"].items() if v is not None
        )
        print(f"averaged params (ema_decay={config.ema_decay}): loss {averaged}")
    print(
        f"wall {results['wall_seconds']:.1f}s (compile {results['compile_seconds']:.1f}s), "
        f"{results['steps_per_sec']:,.0f} steps/s -> {workdir / 'results.json'}"
    )
    for word, label in results.get("samples", []):
        print(f"{word:<20} {label}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
