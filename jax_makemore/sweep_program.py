"""The stacked program of a sweep: M members of one group as one compiled `vmap`ped chunk,
driven by the one training loop (`loop.py`) like a single run.

The train step is `train.train_step_from_config`'s, vmapped over a leading member axis of the stacked
params, batch_stats, opt_state, step and data_key; the optimizer is `optim.build_optimizer`
with the group's traced per-member values (`hp_M`). Inside the program the members of a slice
run in tiles of a few (cache-sized) and are split over the devices (one per core on CPU).
How many members train at once comes from XLA's memory figures of one member's step
(`memory.py`).

Shape letters: M members of a slice (padded to whole tiles on every device), K steps of one
compiled chunk, R tiles, I members of one tile, P evaluation batches.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_makemore import checkpoint as ckpt
from jax_makemore import memory
from jax_makemore.data import SPLITS
from jax_makemore.errors import UserError
from jax_makemore.evaluation import EvalWatch, eval_set_from_config
from jax_makemore.loop import ChunkOut, MemberRun
from jax_makemore.loss import batch_outputs, masked_nll
from jax_makemore.optim import (
    INTEGER_KEYS,
    averaged_params,
    build_optimizer,
    learning_rate_schedule,
    resolved_value,
)
from jax_makemore.restore import variables_of
from jax_makemore.sweep_members import Group
from jax_makemore.train import TrainState, create_train_state, run_keys, train_step_from_config
from jax_makemore.workdir import check_checkpoint, prepare_workdir

#: Rows of all members together that one evaluation call takes at most.
EVAL_ROWS = 65_536
#: Members that train together inside one CPU device's program, all K steps of a chunk,
#: before the next ones: few enough that their state and activations stay in cache.
TILE = 4
#: The mesh axis that members are split along when there are several devices.
MEMBER_AXIS = "members"


def member_hyperparameters(group: Group, configs: Sequence[ml_collections.ConfigDict]) -> dict:
    """hp_M: for each traced key of the group, the members' values as one array."""
    return {
        key: jnp.asarray(
            [resolved_value(c, key) for c in configs],
            jnp.int32 if key in INTEGER_KEYS else jnp.float32,
        )
        for key in group.traced
    }


def make_member_step(group: Group) -> Callable:
    """One member's train step on the flat leaves of its state: `(leaves, hp, X, Y) ->
    (leaves, (loss, seen_2))`, with the module and the optimizer built from the traced `hp`."""
    treedef = jax.tree.structure(group.abstract_state)
    c = group.config

    def member_step(leaves, hp, X, Y):
        state = jax.tree.unflatten(treedef, leaves)
        model = group.model(hp)
        tx = build_optimizer(c, state.params, hp)
        step = train_step_from_config(c, model, group.spec, group.packing, count_seen=True)
        state, loss = step(state.replace(tx=tx, apply_fn=model.apply), X, Y)
        return jax.tree.leaves(state), loss

    return member_step


def make_sweep_chunk(group: Group, num_steps: int, mesh: Mesh | None = None, tile: int = 1):
    """`num_steps` steps of every member in one compiled program: `(leaves_M, hp_M, X, Y) ->
    (leaves_M, (losses_KxM, seen_Mx2))`: the per-step losses and the words and characters
    each member trained on; the state buffers are donated.

    The members run `tile` at a time: a `lax.scan` of the vmapped step over the K steps for
    one tile, then the next tile (`lax.map`), so that a tile's state and activations stay in
    the processor's cache for all K steps instead of streaming every member's through it at
    each step. With a mesh, each device runs its share of the members (`shard_map`; members
    are independent, so nothing is communicated) and the training split is replicated. M must
    be a multiple of `tile` times the mesh size (`member_layout`)."""
    member_step = make_member_step(group)
    if tile == 1:  # one member: the plain step, as train compiles it

        def step(leaves, hp, X, Y):
            first = lambda a: a[0]  # noqa: E731
            leaves, out = member_step(jax.tree.map(first, leaves), jax.tree.map(first, hp), X, Y)
            return jax.tree.map(lambda a: a[None], (leaves, out))

    else:
        step = jax.vmap(member_step, in_axes=(0, 0, None, None))

    def chunk(leaves_M, hp_M, X, Y):
        M = len(leaves_M[0])
        tiles_R = jax.tree.map(lambda a: a.reshape(M // tile, tile, *a.shape[1:]), (leaves_M, hp_M))

        def run_tile(tile_leaves_hp):
            leaves, hp = tile_leaves_hp
            return jax.lax.scan(lambda ls, _: step(ls, hp, X, Y), leaves, None, num_steps)

        leaves_R, (losses_RxKxI, seen_RxKxIx2) = jax.lax.map(run_tile, tiles_R)
        leaves_M = jax.tree.map(lambda a: a.reshape(M, *a.shape[2:]), leaves_R)
        seen_Mx2 = jnp.sum(seen_RxKxIx2, axis=1).reshape(M, 2)
        return leaves_M, (jnp.moveaxis(losses_RxKxI, 1, 0).reshape(num_steps, M), seen_Mx2)

    if mesh is not None:
        chunk = jax.shard_map(
            chunk,
            mesh=mesh,
            in_specs=(P(MEMBER_AXIS), P(MEMBER_AXIS), P(), P()),
            out_specs=(P(MEMBER_AXIS), (P(None, MEMBER_AXIS), P(MEMBER_AXIS))),
        )
    return jax.jit(chunk, donate_argnums=0)


def member_layout(num_members: int, mesh: Mesh | None) -> tuple[int, int]:
    """(rows, tile): the member axis padded so that every device gets the same number of
    members, a whole number of tiles. Tiles of TILE members on CPU, where they keep the
    working set in cache; one tile per device elsewhere (an accelerator wants one wide
    batch)."""
    devices = 1 if mesh is None else mesh.size
    per_device = -(-num_members // devices)
    platform = (jax.local_devices()[0] if mesh is None else mesh.devices.flat[0]).platform
    tile = min(TILE, per_device) if platform == "cpu" else per_device
    per_device = -(-per_device // tile) * tile
    return devices * per_device, tile


def member_mesh(num_devices: int = 0, num_members: int | None = None) -> Mesh | None:
    """A 1-D mesh (axis MEMBER_AXIS) over `num_devices` local devices (0: all, and no more
    than `num_members`) that members are spread over; None for one device."""
    devices = jax.local_devices()
    devices = devices[: min(num_devices or len(devices), num_members or len(devices))]
    return Mesh(np.array(devices), (MEMBER_AXIS,)) if len(devices) > 1 else None


def use_cpu_cores() -> None:
    """One CPU device per usable core (unless set otherwise), so that members spread over
    every core: XLA runs one device's program on about one core. Must run before JAX starts
    its backends; afterwards it changes nothing."""
    cpu_devices = jax.config.jax_num_cpu_devices  # type: ignore[attr-defined]
    if cpu_devices != -1 or "device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # a backend already started (e.g. inside a test session)
        pass


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Arrays copied to every device of the mesh (unchanged without one)."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P()))


def place_members(tree: Any, mesh: Mesh | None, size: int) -> Any:
    """Arrays with a leading member axis padded to `size` rows (copies of the last member,
    whose results are ignored) and split over the mesh's devices."""

    def pad(a):
        extra = size - a.shape[0]
        return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)]) if extra else a

    tree = jax.tree.map(pad, tree)
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P(MEMBER_AXIS)))


def make_sweep_eval(group: Group) -> Callable:
    """`(variables_M, hp_M, X, Y) -> (nll_sum_M, count_M)` in eval mode, vmapped and jitted."""

    def member_eval(variables, hp, X, Y):
        return masked_nll(group.model(hp).apply(variables, X, train=False), Y)

    return jax.jit(jax.vmap(member_eval, in_axes=(0, 0, None, None)))


def member_calls(num_members: int, X: np.ndarray, rows: int) -> int:
    """How many member slices `evaluate_members` scores a split in (the watch's rows count
    once per slice)."""
    per_call = max(1, EVAL_ROWS // min(rows, max(len(X), 1)))
    return -(-num_members // per_call)


def evaluate_members(
    eval_fn: Callable,
    variables_M: Any,
    hp_M: dict,
    X: np.ndarray,
    Y: np.ndarray,
    rows: int,
    tick: Callable[[int], None] | None = None,
) -> list[float | None]:
    """Each member's mean NLL over a split (None when it has no targets) in padded batches of
    `rows` rows, summed as `loss.evaluate_loss` sums them for one model; members go through
    in slices of at most EVAL_ROWS // rows, so that memory stays bounded. `tick(rows)` after
    each batch, as in `loss.batch_outputs`."""
    M = len(jax.tree.leaves(variables_M)[0])
    if len(X) == 0:
        return [None] * M
    per_call = max(1, EVAL_ROWS // min(rows, len(X)))
    out: list[float | None] = []
    for lo in range(0, M, per_call):
        part_M = jax.tree.map(lambda a, lo=lo: a[lo : lo + per_call], (variables_M, hp_M))
        step = lambda X_b, Y_b, part_M=part_M: eval_fn(*part_M, X_b, Y_b)  # noqa: E731
        parts = batch_outputs(step, X, Y, rows, tick)
        sums_PxM, counts_PxM = (np.stack(a) for a in zip(*parts, strict=True))
        count = int(np.sum(counts_PxM[:, 0]))
        for sums_P in np.ascontiguousarray(sums_PxM.T):
            out.append(float(np.sum(sums_P, dtype=np.float64) / count) if count else None)
    return out


def stack_leaves(states: Sequence[Any]) -> list[jax.Array]:
    """The leaves of equally shaped pytrees, stacked along a new leading member axis."""
    return [jnp.stack(xs) for xs in zip(*(jax.tree.leaves(s) for s in states), strict=True)]


def bytes_per_member(group: Group) -> int:
    """Memory of one member's train step (state, gradients, activations), from XLA's figures
    for its compiled one-step program; the shared training split is not counted."""
    X, Y = (jax.ShapeDtypeStruct(a.shape, a.dtype) for a in group.ds.split("train"))
    leaves = [
        jax.ShapeDtypeStruct((1, *a.shape), a.dtype) for a in jax.tree.leaves(group.abstract_state)
    ]
    hp = {
        k: jax.ShapeDtypeStruct((1,), jnp.int32 if k in INTEGER_KEYS else jnp.float32)
        for k in group.traced
    }
    compiled = make_sweep_chunk(group, 1).lower(leaves, hp, X, Y).compile()
    data = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in (X, Y))
    return max((memory.compiled_bytes(compiled) or 0) - data, 1)


def slice_size(group: Group, max_parallel: int | None) -> int:
    """How many members of `group` train at once: `max_parallel` (default: as many as fit in
    MEMORY_FRACTION of the free memory), at most the group's size. A `max_parallel` that does
    not fit is a UserError."""
    n = len(group.members) if max_parallel is None else min(max_parallel, len(group.members))
    free = memory.available_bytes()
    if free is None:
        return n
    per_member = bytes_per_member(group)
    budget = memory.MEMORY_FRACTION * free - group.ds.split("train")[0].nbytes
    fit = int(budget // per_member)
    gb = memory.GB
    if fit < 1:
        raise UserError(
            f"one member of {group.members[0].name} needs about {per_member / gb:.2f} GB but "
            f"only {free / gb:.2f} GB are free; lower --config.batch_size"
        )
    if max_parallel is not None and n > fit:
        raise UserError(
            f"--sweep.max_parallel={max_parallel}: {n} members need about "
            f"{n * per_member / gb:.2f} GB but only {free / gb:.2f} GB are free "
            f"(about {per_member / 1024**2:.1f} MB per member); use --sweep.max_parallel={fit}"
        )
    return min(n, fit)


def slices(
    group: Group, todo: list[MemberRun], resume: bool, max_parallel: int | None
) -> list[list[MemberRun]]:
    """The group's unfinished members in slices that fit in memory; a slice's members
    continue from one step."""
    if not todo:
        return []
    size = slice_size(group, max_parallel)
    by_start: dict[int, list[MemberRun]] = {}
    for r in todo:
        start = (
            ckpt.restore_meta(r.workdir).step if resume and ckpt.has_checkpoint(r.workdir) else 0
        )
        by_start.setdefault(start, []).append(r)
    return [rs[j : j + size] for rs in by_start.values() for j in range(0, len(rs), size)]


class StackedProgram:
    """The members of one slice of a group as the loop's program (loop.Program): their stacked
    state, per-member hyper-parameters, and each member's own optax structure and schedule.
    `compiled` is shared by every slice of the sweep; its compile time is the group's."""

    def __init__(
        self,
        group: Group,
        runs: list[MemberRun],
        states: list[TrainState],
        config_name: str,
        compiled: dict,
    ) -> None:
        self.group, self.runs, self.config_name, self.compiled = group, runs, config_name, compiled
        self.treedefs = [jax.tree.structure(s) for s in states]
        self.schedules = [learning_rate_schedule(r.config) for r in runs]
        steps = {int(s.step) for s in states}
        assert len(steps) == 1, "a slice's members start at one step"
        self.step = steps.pop()
        hp_M = member_hyperparameters(group, [r.config for r in runs])
        self.mesh = member_mesh(group.config.num_devices, len(runs))
        size, self.tile = member_layout(len(runs), self.mesh)
        self.leaves_M, self.hp_M = place_members((stack_leaves(states), hp_M), self.mesh, size)
        X, Y = (jnp.asarray(a) for a in group.ds.split("train"))
        self.X, self.Y = replicate((X, Y), self.mesh)  # once, not at every call
        self.eval_fn = make_sweep_eval(group)
        self.eval_set = eval_set_from_config(group.ds, group.config)  # the rows evaluations score
        self.managers = [ckpt.make_manager(r.workdir, keep=r.config.keep_checkpoints) for r in runs]

    def _key(self, k: int) -> tuple:
        return (id(self.group), len(self.leaves_M[0]), k)

    def compile(self, k: int) -> None:
        if self._key(k) not in self.compiled:
            t0 = time.perf_counter()
            fn = make_sweep_chunk(self.group, k, self.mesh, self.tile)
            self.compiled[self._key(k)] = fn.lower(
                self.leaves_M, self.hp_M, self.X, self.Y
            ).compile()
            self.group.compile_seconds += time.perf_counter() - t0

    def chunk(self, k: int) -> ChunkOut:
        fn = self.compiled[self._key(k)]
        self.leaves_M, out = fn(self.leaves_M, self.hp_M, self.X, self.Y)
        losses_KxM, seen_Mx2 = jax.device_get(out)  # the one host sync
        M = len(self.runs)
        self.step += k
        return ChunkOut(np.ascontiguousarray(losses_KxM[:, :M].T), None, seen_Mx2[:M])

    def evaluate(
        self, averaged: bool = False, watch: EvalWatch | None = None
    ) -> list[dict[str, float | None]]:
        """Every member's split losses on the rows of `eval_set`, in batches of
        eval_batch_size rows as `train`'s (of the averaged params with `averaged`)."""
        rows = self.group.config.eval_batch_size
        state = jax.tree.unflatten(jax.tree.structure(self.group.abstract_state), self.leaves_M)
        params = averaged_params(state.opt_state) if averaged else state.params
        variables_M = variables_of(params, state.batch_stats)
        arrays, M, tick = self.eval_set.arrays, len(self.leaves_M[0]), None
        if watch is not None:
            tick = watch.tick
            watch.begin(sum(len(X) * member_calls(M, X, rows) for X, _ in arrays.values()))
        per_split = {
            name: evaluate_members(self.eval_fn, variables_M, self.hp_M, *arrays[name], rows, tick)
            for name in SPLITS
        }
        return [{name: per_split[name][i] for name in SPLITS} for i in range(len(self.runs))]

    def member_states(self, indices: Sequence[int]) -> list[TrainState]:
        """The states of the members at `indices`, each with its own structure, through one
        host copy of the stacked leaves (cheaper than indexing each device array)."""
        host = jax.device_get(self.leaves_M)
        return [
            jax.tree.unflatten(self.treedefs[i], jax.device_put([leaf[i] for leaf in host]))
            for i in indices
        ]

    def save(self, indices: Sequence[int]) -> None:
        ds = self.group.ds
        todo = [i for i in indices if self.managers[i].latest_step() != self.step]
        for i, state in zip(todo, self.member_states(todo), strict=True):
            config = self.runs[i].config
            ckpt.save(
                self.managers[i],
                self.step,
                state,
                config=config,
                config_name=self.config_name,
                vocab=ds.vocab,
                seq_len=ds.seq_len,
            )

    def latest_checkpoint(self, i: int) -> int | None:
        return self.managers[i].latest_step()

    def learning_rate(self, i: int, step: int) -> float:
        return float(self.schedules[i](step))


def member_states(
    group: Group, runs: list[MemberRun], resume: bool, overwrite: bool
) -> list[TrainState]:
    """Prepare each member's workdir and state: fresh from its seed as `train` makes it, or
    (with `resume`) restored from its checkpoint when it has one, after the same checks."""
    states = []
    abstract = jax.tree.leaves(group.abstract_state)
    for r in runs:
        c = r.config
        has_checkpoint = resume and ckpt.has_checkpoint(r.workdir)
        resuming = prepare_workdir(r.workdir, has_checkpoint, overwrite)
        model = group.spec.build(c.model, group.ds.vocab.size, group.ds.seq_len)
        init_key, data_key, _ = run_keys(c.seed)
        state = create_train_state(c, model, init_key, data_key, group.ds.seq_len)
        if resuming:
            meta = ckpt.restore_meta(r.workdir)
            check_checkpoint(meta, c, r.workdir, group.ds.vocab)
            state = ckpt.restore_state(r.workdir, meta.step, target=state)
        leaves = jax.tree.leaves(state)
        if [(np.shape(a), jnp.result_type(a)) for a in leaves] != [
            (a.shape, a.dtype) for a in abstract
        ]:
            raise RuntimeError(f"sweep member {r.name}: its state differs from its group's")
        states.append(state)
    return states
