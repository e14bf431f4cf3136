"""`python -m jax_makemore.sweep --config NAME --sweep.KEY=v1,v2,... [--sweep.seed=0:8]
[--sweep.max_parallel=N] [--workdir DIR] [--resume] [--overwrite] [--config.KEY=VALUE ...]`:
train the cross product of the swept values, many models in one compiled program.

Members whose programs agree -- the same static config values (every key that is not a float
or the seed) and so the same array shapes -- form a group. A group trains as one program: the
train step of `train.py` is `jax.vmap`ped over a leading member axis of the stacked params,
batch_stats, opt_state, step and data_key, and `steps_per_call` steps are fused in one
`lax.scan`. Values that differ inside a group enter that program as traced per-member arrays,
not as constants, so one compilation serves every member: the optimizer keys of
`TRACED_KEYS` (the optax chain rebuilt from per-member arrays) and a model's float
hyper-parameters (the Flax module is built inside the vmapped function with a traced field,
e.g. bn_momentum) when its code does not branch on them. Groups run one after another, each
in slices of at most `max_parallel` members; inside the program the members of a slice run in
tiles of a few (cache-sized) and are split over the devices (one per core on CPU).

Each member is a normal run directory `DIR/members/<name>/` (checkpoint, metrics.jsonl,
results.json, as `train` writes them), so sample, evaluate, plot and `train --resume` accept
it; `DIR/sweep.json` lists every member's overrides, status and split losses. docs/sweeps.md
says more.

Shape letters: M members of a slice (padded to whole tiles on every device), K steps of one
compiled chunk, R tiles, I members of one tile, P evaluation batches.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_makemore import checkpoint as ckpt
from jax_makemore import config as config_lib
from jax_makemore import run
from jax_makemore.data import SPLITS, Dataset, dataset_from_config
from jax_makemore.errors import Interrupted, UserError, run_cli
from jax_makemore.loss import masked_nll, pad_rows
from jax_makemore.models import ModelSpec, get_spec
from jax_makemore.optim import build_optimizer, l2_mean_as_weight_decay, learning_rate_schedule
from jax_makemore.restore import variables_of
from jax_makemore.train import (
    TrainState,
    chunk_ends,
    create_train_state,
    make_train_step,
    num_params,
)

#: Top-level keys that may differ inside a group: the optimizer reads them as traced arrays.
TRACED_KEYS = (
    "learning_rate",
    "lr_decay_factor",
    "lr_decay_steps",
    "lr_min_factor",
    "weight_decay",
    "l2_mean",
    "adam_b1",
    "adam_b2",
    "adam_eps",
)
#: Keys of the learning-rate schedule (a subset of TRACED_KEYS).
SCHEDULE_KEYS = ("learning_rate", "lr_decay_factor", "lr_decay_steps", "lr_min_factor")
#: Top-level keys that may differ inside a group because only the host uses them: the seed
#: gives each member its own init and data keys (state leaves); the others are checked or
#: ignored per member.
HOST_KEYS = ("seed", "divergence_loss", "num_samples")
#: `--sweep.KEY` options that are not config keys.
OPTION_KEYS = ("max_parallel",)
#: Rows of all members together that one evaluation call takes at most.
EVAL_ROWS = 65_536
#: Fraction of the free memory a slice of members may plan to use.
MEMORY_FRACTION = 0.8
#: Members that train together inside one CPU device's program, all K steps of a chunk,
#: before the next ones: few enough that their state and activations stay in cache.
TILE = 4
#: The mesh axis that members are split along when there are several devices.
MEMBER_AXIS = "members"
SWEEP_FILE = "sweep.json"
MEMBERS_DIR = "members"


# ---------------------------------------------------------------------------------------------
# Command line: swept values and members


def split_sweep_args(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate `--sweep.KEY=VALUES` / `--sweep.KEY VALUES` from the other arguments."""
    rest, swept = config_lib.split_config_args(argv, prefix="sweep")
    keys = [key for key, _ in swept]
    for key in keys:
        if keys.count(key) > 1:
            raise UserError(f"--sweep.{key} is given twice")
    return rest, swept


def split_values(key: str, text: str) -> list[str]:
    """The comma-separated values of `--sweep.KEY` (commas inside brackets stay: a tuple is
    one value); an integer range `a:b` stands for a, a+1, ..., b-1."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    values = []
    for item in items:
        if item == "":
            continue
        match = re.fullmatch(r"(-?\d+):(-?\d+)", item)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi <= lo:
                raise UserError(
                    f"--sweep.{key}={text!r}: the range {item} is empty (a:b needs b > a)"
                )
            values.extend(str(v) for v in range(lo, hi))
        else:
            values.append(item)
    if not values:
        raise UserError(f"--sweep.{key}={text!r}: no values (expected V1,V2,... or a:b)")
    return values


@dataclasses.dataclass
class Member:
    """One run of the sweep: its name (from the swept values), the typed swept values and
    the resolved config."""

    name: str
    values: dict[str, Any]
    config: ml_collections.ConfigDict


def _format_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ",".join(_format_value(v) for v in value) + ")"
    return repr(value) if isinstance(value, float) else str(value)


def _dir_name(name: str) -> str:
    """A member name as one path component."""
    return name.replace(os.sep, "_").replace("\0", "_") if name not in (".", "..") else f"_{name}"


def _apply(base: ml_collections.ConfigDict, pairs: Sequence[tuple[str, str]], where: str):
    """A copy of `base` with the `pairs` applied and validated; errors name `where`."""
    config = copy.deepcopy(base)
    try:
        config_lib.apply_overrides(config, pairs)
        config_lib.validate_config(config)
    except UserError as err:
        text = str(err)
        for key, _ in pairs:  # the config's messages name --config.KEY; this flag is --sweep.KEY
            text = text.replace(f"--config.{key}=", f"--sweep.{key}=")
        raise UserError(text if text.startswith("--sweep.") else f"{where}: {text}") from None
    return config


def expand_members(
    base: ml_collections.ConfigDict, swept: Sequence[tuple[str, str]]
) -> list[Member]:
    """The cross product of the swept values (in command-line order), each a resolved config.
    Unknown keys, values of the wrong type and repeated values are one-line UserErrors."""
    if not swept:
        raise UserError("nothing to sweep: give at least one --sweep.KEY=V1,V2,...")
    axes = []
    for key, text in swept:
        texts = split_values(key, text)
        typed = {}
        for t in texts:
            single = _apply(base, [(key, t)], f"--sweep.{key}")
            value = _get(single, key)
            if value in typed.values():
                raise UserError(
                    f"--sweep.{key}={text!r}: the value {_format_value(value)} is listed twice"
                )
            typed[t] = value
        axes.append([(key, t, v) for t, v in typed.items()])
    members = []
    for combo in itertools.product(*axes):
        name = ",".join(f"{key}={_format_value(v)}" for key, _, v in combo)
        config = _apply(base, [(key, t) for key, t, _ in combo], f"sweep member {name}")
        members.append(Member(name, {key: v for key, _, v in combo}, config))
    return members


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, list) else node


# ---------------------------------------------------------------------------------------------
# Groups: which members share one compiled program


def _model_float_keys(config: ml_collections.ConfigDict) -> list[str]:
    """The model's float hyper-parameters, as dotted keys (`model.bn_momentum`)."""
    params = get_spec(config.model.name).hyperparameters()
    return [f"model.{k}" for k, v in config.model.items() if k in params and isinstance(v, float)]


def traceable_model_key(
    spec: ModelSpec, model_config: ml_collections.ConfigDict, key: str, vocab_size: int,
    seq_len: int,
) -> bool:  # fmt: skip
    """Whether the module of `model_config` trains and evaluates with its float field `key`
    given as a traced value: False when its code branches on the value (a dropout rate)."""
    T = model_config["block_size"] if spec.layout == "windows" else seq_len
    x_BxT = jax.ShapeDtypeStruct((2, T), jnp.int32)
    y = jax.ShapeDtypeStruct((2,) if spec.layout == "windows" else (2, T), jnp.int32)
    model = spec.build(model_config, vocab_size, seq_len)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x_BxT)

    def probe(value, variables, x_BxT, y):
        traced = spec.build({**model_config.to_dict(), key: value}, vocab_size, seq_len)
        state = TrainState.create(
            apply_fn=traced.apply, params=variables["params"], tx=optax.sgd(0.1),
            batch_stats=variables.get("batch_stats", {}), data_key=jax.random.PRNGKey(0),
        )  # fmt: skip
        step = make_train_step(traced, batch_size=2, full_batch=True, spec=spec)
        return step(state, x_BxT, y)[1], traced.apply(variables, x_BxT, train=False)

    try:
        jax.eval_shape(probe, jnp.float32(model_config[key]), variables, x_BxT, y)
        return True
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError, TypeError):
        return False


@dataclasses.dataclass
class Group:
    """Members that train as one program. `config` is the first member's; `traced` lists the
    dotted keys whose values differ between the members, each a per-member array in the
    program; `abstract_state` is the train state's shapes and dtypes, the same for all."""

    members: list[Member]
    config: ml_collections.ConfigDict
    spec: ModelSpec
    ds: Dataset
    traced: list[str]
    abstract_state: Any

    def model(self, hp: dict[str, Any] | None = None):
        """The Flax module, with the traced model hyper-parameters of `hp` (arrays) when given."""
        fields = {k[len("model.") :]: v for k, v in (hp or {}).items() if k.startswith("model.")}
        model_config = {**self.config.model.to_dict(), **fields} if fields else self.config.model
        return self.spec.build(model_config, self.ds.vocab.size, self.ds.seq_len)


def _check_sweepable(member: Member) -> None:
    if get_spec(member.config.model.name).fit is not None:
        raise UserError(
            f"sweep member {member.name}: model {member.config.model.name!r} is fitted in "
            f"closed form, not trained; there is nothing to sweep"
        )
    if member.config.log_diagnostics:
        raise UserError(
            "config key log_diagnostics=True is not supported by sweep; train one member with it"
        )


def group_members(members: Sequence[Member]) -> list[Group]:
    """Members grouped by their static config values -- every key except TRACED_KEYS,
    HOST_KEYS and the model floats that trace -- and so by the tree of shapes and dtypes of
    their train state (computed once per group with `jax.eval_shape`)."""
    datasets: dict[tuple, Dataset] = {}
    traceable: dict[tuple, bool] = {}
    groups: dict[tuple, Group] = {}
    for m in members:
        _check_sweepable(m)
        c, spec = m.config, get_spec(m.config.model.name)
        data_id = (c.data_path, c.split_seed, tuple(c.split_fractions), c.max_word_length)
        data_id += (spec.layout, c.model.get("block_size"))
        if data_id not in datasets:
            datasets[data_id] = dataset_from_config(c)
        ds = datasets[data_id]
        flat = run.flatten_config(c)
        floats = _model_float_keys(c)
        model_static = tuple(
            (k, v) for k, v in flat.items() if k.startswith("model.") and k not in floats
        )
        free = set(TRACED_KEYS) | set(HOST_KEYS)
        for key in floats:
            if (model_static, key) not in traceable:
                traceable[model_static, key] = traceable_model_key(
                    spec, c.model, key[len("model.") :], ds.vocab.size, ds.seq_len
                )
            if traceable[model_static, key]:
                free.add(key)
        static = tuple((k, v) for k, v in flat.items() if k not in free)
        # structure no traced value can change: which weight-decay stages the optax chain has
        static += (("weight_decay>0", c.weight_decay > 0), ("l2_mean>0", c.l2_mean > 0))
        if static not in groups:
            groups[static] = Group([], c, spec, ds, sorted(free - set(HOST_KEYS)), None)
        groups[static].members.append(m)
    for g in groups.values():
        g.traced = [k for k in g.traced if len({_get(m.config, k) for m in g.members}) > 1]
        g.abstract_state = abstract_state(g)
    return list(groups.values())


def abstract_state(group: Group) -> TrainState:
    """The group's train state as shapes and dtypes (nothing is computed)."""
    model, key = group.model(), jax.random.PRNGKey(0)
    return jax.eval_shape(
        lambda: create_train_state(group.config, model, key, key, group.ds.seq_len)
    )


# ---------------------------------------------------------------------------------------------
# The optimizer with per-member hyper-parameters


def resolved_value(config: ml_collections.ConfigDict, key: str) -> Any:
    """The value of `key` that the optimizer uses (lr_decay_steps -1 means num_steps // 2)."""
    if key == "lr_decay_steps" and config.lr_decay_steps < 0:
        return config.num_steps // 2
    return _get(config, key)


def member_schedule(config: ml_collections.ConfigDict, hp: dict[str, Any]) -> optax.Schedule:
    """`optim.learning_rate_schedule` with the traced values of `hp` in place of the config's,
    as the same float operations: the step decay is written as optax's piecewise schedule with
    a traced boundary and a factor of exactly 1 where the config would not decay."""
    if not any(k in hp for k in SCHEDULE_KEYS):
        return learning_rate_schedule(config)
    lr = hp.get("learning_rate", config.learning_rate)
    warmup = config.warmup_steps
    if config.lr_schedule == "cosine":
        alpha = hp.get("lr_min_factor", config.lr_min_factor)
        main = optax.cosine_decay_schedule(lr, max(config.num_steps - warmup, 1), alpha=alpha)
    else:
        decay_steps = hp.get("lr_decay_steps", resolved_value(config, "lr_decay_steps"))
        factor = hp.get("lr_decay_factor", config.lr_decay_factor)
        factor = jnp.where(jnp.asarray(decay_steps) > 0, factor, 1.0)
        threshold = decay_steps - warmup

        def main(count):
            indicator = jnp.maximum(0.0, jnp.sign(threshold - count))
            return lr * indicator + (1 - indicator) * factor * lr

    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def member_optimizer(
    config: ml_collections.ConfigDict, hp: dict[str, Any], params: Any
) -> optax.GradientTransformation:
    """`optim.build_optimizer` with the traced values of `hp` in place of the config's; the
    chain's structure (which stages it has) comes from `config`, as in the group key."""
    if not any(k in hp for k in TRACED_KEYS):
        return build_optimizer(config, params)

    def get(key: str) -> Any:
        return hp.get(key, config[key])

    schedule = member_schedule(config, hp)
    decay_mask = jax.tree.map(lambda p: p.ndim >= 2, params) if config.decay_matrices_only else None
    decay = []
    if config.l2_mean > 0:
        decay.append(l2_mean_as_weight_decay(get("l2_mean"), params))
    if config.optimizer == "sgd":
        if config.weight_decay > 0:
            decay.append(optax.add_decayed_weights(get("weight_decay"), mask=decay_mask))
        return optax.chain(*decay, optax.sgd(schedule))
    adamw = optax.adamw(
        schedule, b1=get("adam_b1"), b2=get("adam_b2"), eps=get("adam_eps"),
        weight_decay=get("weight_decay"), mask=decay_mask,
    )  # fmt: skip
    return optax.chain(*decay, adamw)


def member_hyperparameters(group: Group, members: Sequence[Member]) -> dict[str, jax.Array]:
    """hp_M: for each traced key of the group, the members' values as one array."""
    return {
        key: jnp.asarray(
            [resolved_value(m.config, key) for m in members],
            jnp.int32 if key == "lr_decay_steps" else jnp.float32,
        )
        for key in group.traced
    }


# ---------------------------------------------------------------------------------------------
# The compiled programs


def make_member_step(group: Group) -> Callable:
    """One member's train step on the flat leaves of its state: `(leaves, hp, X, Y) ->
    (leaves, loss)`, with the module and the optimizer built from the traced `hp`."""
    treedef = jax.tree.structure(group.abstract_state)
    c = group.config

    def member_step(leaves, hp, X, Y):
        state = jax.tree.unflatten(treedef, leaves)
        model = group.model(hp)
        tx = member_optimizer(c, hp, state.params)
        step = make_train_step(
            model, batch_size=c.batch_size, full_batch=c.full_batch, spec=group.spec
        )
        state, loss = step(state.replace(tx=tx, apply_fn=model.apply), X, Y)
        return jax.tree.leaves(state), loss

    return member_step


def make_sweep_chunk(
    group: Group, num_steps: int, mesh: Mesh | None = None, tile: int = 1
) -> Callable:
    """`num_steps` steps of every member in one compiled program: `(leaves_M, hp_M, X, Y) ->
    (leaves_M, losses_KxM)`; the state buffers are donated.

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
            leaves, loss = member_step(jax.tree.map(first, leaves), jax.tree.map(first, hp), X, Y)
            return jax.tree.map(lambda a: a[None], leaves), loss[None]

    else:
        step = jax.vmap(member_step, in_axes=(0, 0, None, None))

    def chunk(leaves_M, hp_M, X, Y):
        M = len(leaves_M[0])
        tiles_R = jax.tree.map(lambda a: a.reshape(M // tile, tile, *a.shape[1:]), (leaves_M, hp_M))

        def run_tile(tile_leaves_hp):
            leaves, hp = tile_leaves_hp
            return jax.lax.scan(lambda ls, _: step(ls, hp, X, Y), leaves, None, num_steps)

        leaves_R, losses_RxKxI = jax.lax.map(run_tile, tiles_R)
        leaves_M = jax.tree.map(lambda a: a.reshape(M, *a.shape[2:]), leaves_R)
        return leaves_M, jnp.moveaxis(losses_RxKxI, 1, 0).reshape(num_steps, M)

    if mesh is not None:
        chunk = jax.shard_map(
            chunk,
            mesh=mesh,
            in_specs=(P(MEMBER_AXIS), P(MEMBER_AXIS), P(), P()),
            out_specs=(P(MEMBER_AXIS), P(None, MEMBER_AXIS)),
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
    if jax.config.jax_num_cpu_devices != -1 or "device_count" in os.environ.get("XLA_FLAGS", ""):
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


def evaluate_members(
    eval_fn: Callable, variables_M: Any, hp_M: dict, X: np.ndarray, Y: np.ndarray, rows: int
) -> list[float | None]:
    """Each member's mean NLL over a split (None when it has no targets) in padded batches of
    `rows` rows, summed as `loss.evaluate_loss` sums them for one model; members go through
    in slices of at most EVAL_ROWS // rows, so that memory stays bounded."""
    M = len(jax.tree.leaves(variables_M)[0])
    if len(X) == 0:
        return [None] * M
    rows = min(rows, len(X))
    X_pad, Y_pad = pad_rows(X, Y, -(-len(X) // rows) * rows)
    per_call = max(1, EVAL_ROWS // rows)
    out: list[float | None] = []
    for lo in range(0, M, per_call):
        part_M = jax.tree.map(lambda a, lo=lo: a[lo : lo + per_call], (variables_M, hp_M))
        parts = [
            eval_fn(*part_M, X_pad[i : i + rows], Y_pad[i : i + rows])
            for i in range(0, len(X_pad), rows)
        ]
        sums_PxM, counts_PxM = (np.stack(a) for a in zip(*jax.device_get(parts), strict=True))
        count = int(np.sum(counts_PxM[:, 0]))
        for sums_P in np.ascontiguousarray(sums_PxM.T):
            out.append(float(np.sum(sums_P, dtype=np.float64) / count) if count else None)
    return out


def stack_leaves(states: Sequence[Any]) -> list[jax.Array]:
    """The leaves of equally shaped pytrees, stacked along a new leading member axis."""
    return [jnp.stack(xs) for xs in zip(*(jax.tree.leaves(s) for s in states), strict=True)]


# ---------------------------------------------------------------------------------------------
# Memory


def _peak_bytes(jaxpr: Any) -> int:
    """Largest total size of the values live at once while `jaxpr` runs (its inputs
    included): a model of a program's working memory that needs no compilation."""

    def size(v) -> int:
        aval = getattr(v, "aval", None)
        shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
        if shape is None or dtype is None:
            return 0
        itemsize = getattr(dtype, "itemsize", None) or 8  # a typed PRNG key: two uint32
        return math.prod(shape) * itemsize

    def inner(eqn) -> int:
        subs = []
        for value in eqn.params.values():
            for item in value if isinstance(value, tuple | list) else (value,):
                sub = getattr(item, "jaxpr", item)
                if hasattr(sub, "eqns"):
                    subs.append(sub)
        return max((_peak_bytes(s) for s in subs), default=0)

    last_use: dict[Any, int] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if not hasattr(v, "val"):  # a Literal is not a buffer
                last_use[v] = i
    for v in jaxpr.outvars:
        if not hasattr(v, "val"):
            last_use[v] = len(jaxpr.eqns)
    live = {v: size(v) for v in [*jaxpr.constvars, *jaxpr.invars]}
    peak = sum(live.values())
    for i, eqn in enumerate(jaxpr.eqns):
        outs = {v: size(v) for v in eqn.outvars}
        peak = max(peak, sum(live.values()) + sum(outs.values()) + inner(eqn))
        live.update(outs)
        live = {v: s for v, s in live.items() if last_use.get(v, -1) > i}
    return peak


def bytes_per_member(group: Group) -> int:
    """Working memory of one member's train step (state, gradients, activations), estimated
    from its jaxpr; the shared training split is not counted."""
    X, Y = (jax.ShapeDtypeStruct(a.shape, a.dtype) for a in group.ds.split("train"))
    leaves = jax.tree.leaves(group.abstract_state)
    hp = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in group.traced}
    if "lr_decay_steps" in hp:
        hp["lr_decay_steps"] = jax.ShapeDtypeStruct((), jnp.int32)
    jaxpr = jax.make_jaxpr(make_member_step(group))(leaves, hp, X, Y)
    data = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in (X, Y))
    return max(_peak_bytes(jaxpr.jaxpr) - data, 1)


def available_bytes() -> int | None:
    """Free memory of the device (an accelerator's allocator limit, or the host's available
    RAM), None when unknown."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def slice_size(group: Group, max_parallel: int | None) -> int:
    """How many members of `group` train at once: `max_parallel` (default: as many as fit in
    MEMORY_FRACTION of the free memory), at most the group's size. A `max_parallel` that does
    not fit is a UserError."""
    n = len(group.members) if max_parallel is None else min(max_parallel, len(group.members))
    free = available_bytes()
    if free is None:
        return n
    per_member = bytes_per_member(group)
    budget = MEMORY_FRACTION * free - group.ds.split("train")[0].nbytes
    fit = int(budget // per_member)
    gb = 1024**3
    if fit < 1:
        raise UserError(
            f"one member of {group.members[0].name} needs about {per_member / gb:.2f} GB but "
            f"only {free / gb:.2f} GB are free"
        )
    if max_parallel is not None and n > fit:
        raise UserError(
            f"--sweep.max_parallel={max_parallel}: {n} members need about "
            f"{n * per_member / gb:.2f} GB but only {free / gb:.2f} GB are free "
            f"(about {per_member / 1024**2:.1f} MB per member); use --sweep.max_parallel={fit}"
        )
    return min(n, fit)


# ---------------------------------------------------------------------------------------------
# Training one slice of a group


@dataclasses.dataclass
class MemberRun:
    """A member's run directory and where it stands: status pending, running, done or
    diverged (then `error` says how); `results` is its results.json once done."""

    member: Member
    workdir: Path
    status: str = "pending"
    error: str | None = None
    results: dict[str, Any] | None = None

    def start_step(self) -> int:
        return ckpt.restore_meta(self.workdir).step if ckpt.has_checkpoint(self.workdir) else 0


class Progress:
    """Members done / total on stderr: a tqdm bar on a terminal, else plain lines."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.bar = total, done, None
        if sys.stderr.isatty() and total > done:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, file=sys.stderr, unit="member")

    def info(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def step(self, where: str, step: int, num_steps: int, steps_per_sec: float) -> None:
        """After each compiled chunk of a slice."""
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"{where} step {step}/{num_steps} {steps_per_sec:,.0f} steps/s"
            )

    def members_done(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            self.info(f"sweep: {self.done}/{self.total} members done")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclasses.dataclass
class Slice:
    """Members of one group trained together: their stacked state and per-member arrays."""

    group: Group
    runs: list[MemberRun]
    leaves_M: list[jax.Array]
    hp_M: dict[str, jax.Array]
    treedefs: list[Any]  # each member's own TrainState structure (its own optax chain)
    schedules: list[Callable]
    step: int
    mesh: Mesh | None  # devices the member axis is split over
    tile: int  # members per tile (make_sweep_chunk); rows are padded by member_layout

    def member_states(self, indices: Sequence[int]) -> list[TrainState]:
        """The states of the members at `indices`, each with its own structure, through one
        host copy of the stacked leaves (cheaper than indexing each device array)."""
        host = jax.device_get(self.leaves_M)
        return [
            jax.tree.unflatten(self.treedefs[i], jax.device_put([leaf[i] for leaf in host]))
            for i in indices
        ]

    def variables_M(self) -> dict[str, Any]:
        state = jax.tree.unflatten(jax.tree.structure(self.group.abstract_state), self.leaves_M)
        return variables_of(state.params, state.batch_stats)


def start_slice(group: Group, runs: list[MemberRun], resume: bool, overwrite: bool) -> Slice:
    """Prepare each member's workdir and state: fresh from its seed as `train` makes it, or
    (with `resume`) restored from its checkpoint when it has one."""
    states, treedefs, schedules = [], [], []
    abstract = jax.tree.leaves(group.abstract_state)
    for r in runs:
        c = r.member.config
        has_checkpoint = resume and ckpt.has_checkpoint(r.workdir)
        resuming = run.prepare_workdir(r.workdir, has_checkpoint, overwrite)
        model = group.spec.build(c.model, group.ds.vocab.size, group.ds.seq_len)
        init_key, data_key, _ = jax.random.split(jax.random.PRNGKey(c.seed), 3)
        state = create_train_state(c, model, init_key, data_key, group.ds.seq_len)
        if resuming:
            meta = ckpt.restore_meta(r.workdir)
            run.check_resumable(meta.config, c, r.workdir)
            state = ckpt.restore_state(r.workdir, meta.step, target=state)
        leaves = jax.tree.leaves(state)
        if [(np.shape(a), jnp.result_type(a)) for a in leaves] != [
            (a.shape, a.dtype) for a in abstract
        ]:
            raise RuntimeError(f"sweep member {r.member.name}: its state differs from its group's")
        states.append(state)
        treedefs.append(jax.tree.structure(state))
        schedules.append(learning_rate_schedule(c))
        r.status = "running"
    steps = {int(s.step) for s in states}
    assert len(steps) == 1, "a slice's members start at one step"
    hp_M = member_hyperparameters(group, [r.member for r in runs])
    mesh = member_mesh(group.config.num_devices, len(runs))
    size, tile = member_layout(len(runs), mesh)
    leaves_M, hp_M = place_members((stack_leaves(states), hp_M), mesh, size)
    return Slice(group, runs, leaves_M, hp_M, treedefs, schedules, steps.pop(), mesh, tile)


class SliceTrainer:
    """Runs a slice's compiled chunks to `num_steps`: per-member metrics, divergence,
    evaluation and checkpoints at the chunk ends, as `train.train_chunks` does for one run."""

    def __init__(self, s: Slice, config_name: str, progress: Progress, compiled: dict) -> None:
        self.s, self.config_name, self.progress, self.compiled = s, config_name, progress, compiled
        self.config = s.group.config
        self.X, self.Y = (jnp.asarray(a) for a in s.group.ds.split("train"))
        self.X, self.Y = replicate((self.X, self.Y), s.mesh)  # once, not at every call
        self.eval_fn = make_sweep_eval(s.group)
        self.compile_seconds = self.train_seconds = 0.0
        self.split_loss: list[dict[str, float | None]] | None = None

    def live(self) -> list[int]:
        return [i for i, r in enumerate(self.s.runs) if r.status == "running"]

    def chunk(self, k: int) -> np.ndarray:
        """Run k steps of every member; returns losses_MxK."""
        s = self.s
        key = (id(s.group), len(s.leaves_M[0]), k)
        if key not in self.compiled:
            t0 = time.perf_counter()
            fn = make_sweep_chunk(s.group, k, s.mesh, s.tile)
            self.compiled[key] = fn.lower(s.leaves_M, s.hp_M, self.X, self.Y).compile()
            self.compile_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        s.leaves_M, losses_KxM = self.compiled[key](s.leaves_M, s.hp_M, self.X, self.Y)
        losses_KxM = np.asarray(losses_KxM)[:, : len(s.runs)]  # the one host sync
        losses_MxK = np.ascontiguousarray(losses_KxM.T)
        self.train_seconds += time.perf_counter() - t0
        s.step += k
        return losses_MxK

    def evaluate(self) -> list[dict[str, float | None]]:
        """Every member's split losses, in batches of eval_batch_size rows as `train`'s."""
        rows = self.config.eval_batch_size
        variables_M = self.s.variables_M()
        per_split = {
            name: evaluate_members(
                self.eval_fn, variables_M, self.s.hp_M, *self.s.group.ds.split(name), rows
            )
            for name in SPLITS
        }
        return [{name: per_split[name][i] for name in SPLITS} for i in range(len(self.s.runs))]

    def check_divergence(self, i: int, losses_K: np.ndarray, start: int) -> None:
        r = self.s.runs[i]
        c = r.member.config
        diverged_K = ~np.isfinite(losses_K) | (losses_K > c.divergence_loss)
        if diverged_K.any():
            first = int(np.argmax(diverged_K))
            r.status = "diverged"
            r.error = (
                f"training diverged: the loss became {losses_K[first]:.4g} at step "
                f"{start + first + 1} (learning_rate={c.learning_rate}, "
                f"divergence_loss={c.divergence_loss}); its last checkpoint is kept"
            )
            self.progress.info(f"sweep member {r.member.name}: {r.error}")

    def save(self, indices: Sequence[int]) -> None:
        """A checkpoint of each member at `indices` at the current step (unless it has one)."""
        ds, step = self.s.group.ds, self.s.step
        managers = {
            i: ckpt.make_manager(
                self.s.runs[i].workdir, keep=self.s.runs[i].member.config.keep_checkpoints
            )
            for i in indices
        }
        todo = [i for i in indices if managers[i].latest_step() != step]
        for i, state in zip(todo, self.s.member_states(todo), strict=True):
            config = self.s.runs[i].member.config
            ckpt.save(managers[i], step, state, config, self.config_name, ds.vocab, ds.seq_len)

    def after_chunk(self, losses_MxK: np.ndarray, k: int, dt: float, stop: run.StopFlag) -> None:
        """Metrics, divergence, evaluation, checkpoints and the stop flag at a chunk's end."""
        c, step = self.config, self.s.step
        for i in self.live():
            self.check_divergence(i, losses_MxK[i], step - k)
        evaluate = step % c.eval_every == 0 or step == c.num_steps
        self.split_loss = self.evaluate() if evaluate and self.live() else None
        for i in self.live():
            record = {
                "step": step,
                "loss": float(losses_MxK[i].mean()),
                "lr": float(self.s.schedules[i](step - 1)),
                "steps_per_sec": k / dt,
            }
            if self.split_loss is not None:
                record["split_loss"] = self.split_loss[i]
            with open(self.s.runs[i].workdir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if step % c.checkpoint_every == 0 or step == c.num_steps:
            self.save(self.live())
        if stop.signum is not None:
            self.save(self.live())
            name = signal.Signals(stop.signum).name
            self.progress.info(
                f"{name}: saved every member of the running slice at step {step}; "
                f"continue with --resume"
            )
            raise Interrupted(int(stop.signum))

    def train(self, where: str, stop: run.StopFlag) -> None:
        c = self.config
        start = self.s.step
        t_start = time.perf_counter()
        periods = (c.steps_per_call, c.eval_every, c.checkpoint_every)
        for end in chunk_ends(start, c.num_steps, periods):
            if not self.live():
                break
            k = end - self.s.step
            t0 = time.perf_counter()
            losses_MxK = self.chunk(k)
            dt = time.perf_counter() - t0
            self.after_chunk(losses_MxK, k, dt, stop)
            self.progress.step(where, self.s.step, c.num_steps, k * len(self.s.runs) / dt)
        self.finish(start, time.perf_counter() - t_start)

    def finish(self, start: int, wall: float) -> None:
        """Checkpoint, evaluate (unless the last chunk did) and write each live member's
        results.json with the keys `train` writes."""
        live = self.live()
        if not live:
            return
        self.save(live)
        if self.split_loss is None or self.s.step != self.config.num_steps:
            self.split_loss = self.evaluate()
        params = num_params(self.s.group.abstract_state.params)
        steps_run = self.s.step - start
        for i in live:
            r = self.s.runs[i]
            r.results = {
                "config": self.config_name,
                "model": r.member.config.model.name,
                "num_params": params,
                "steps": self.s.step,
                "loss": self.split_loss[i],
                "wall_seconds": wall,
                "compile_seconds": self.compile_seconds,
                "steps_per_sec": steps_run / self.train_seconds if self.train_seconds > 0 else 0.0,
            }
            run.write_json_atomic(r.workdir / "results.json", r.results)
            r.status = "done"


# ---------------------------------------------------------------------------------------------
# The sweep: its directory, sweep.json, the table


def prepare_sweep_dir(
    workdir: Path, members: Sequence[Member], resume: bool, overwrite: bool
) -> dict[str, MemberRun]:
    """The member runs by name; with `resume`, the done and diverged ones as sweep.json says.
    A workdir that already holds a sweep needs --resume or --overwrite."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"workdir '{workdir}' is a file, not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    runs = {m.name: MemberRun(m, workdir / MEMBERS_DIR / _dir_name(m.name)) for m in members}
    path = workdir / SWEEP_FILE
    if not path.is_file():
        if resume:
            raise UserError(f"--resume: workdir '{workdir}' holds no sweep (no {SWEEP_FILE})")
        return runs
    if overwrite and not resume:
        shutil.rmtree(workdir / MEMBERS_DIR, ignore_errors=True)
        path.unlink()
        return runs
    if not resume:
        raise UserError(
            f"workdir '{workdir}' already holds a sweep; use --resume to finish it or "
            f"--overwrite to replace it"
        )
    saved = json.loads(path.read_text(encoding="utf-8"))
    if sorted(e["name"] for e in saved["members"]) != sorted(runs):
        raise UserError(
            f"--resume: the sweep in '{workdir}' has other members than these --sweep flags; "
            f"use the same flags, another --workdir, or --overwrite"
        )
    for entry in saved["members"]:
        r = runs[entry["name"]]
        if entry["status"] == "done" and (r.workdir / "results.json").is_file():
            r.status = "done"
            r.results = json.loads((r.workdir / "results.json").read_text(encoding="utf-8"))
        elif entry["status"] == "diverged":
            r.status, r.error = "diverged", entry.get("error")
    return runs


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def sweep_record(
    config_name: str, workdir: Path, runs: dict[str, MemberRun], groups: Sequence[Group]
) -> dict[str, Any]:
    """The content of sweep.json: the swept values, and per member its overrides, group,
    status, steps and split losses."""
    members = [r.member for r in runs.values()]
    keys = list(members[0].values)
    group_of = {m.name: gi for gi, g in enumerate(groups) for m in g.members}
    return {
        "config": config_name,
        "swept": {k: list(dict.fromkeys(_jsonable(m.values[k]) for m in members)) for k in keys},
        "members": [
            {
                "name": r.member.name,
                "workdir": str(r.workdir.relative_to(workdir)),
                "overrides": {k: _jsonable(v) for k, v in r.member.values.items()},
                "group": group_of[r.member.name],
                "status": r.status,
                "error": r.error,
                "steps": r.results["steps"] if r.results else None,
                "loss": r.results["loss"] if r.results else None,
            }
            for r in runs.values()
        ],
        "groups": [{"members": len(g.members), "traced": g.traced} for g in groups],
    }


def run_sweep(
    members: Sequence[Member],
    config_name: str,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_parallel: int | None = None,
) -> dict[str, Any]:
    """Train every member, group by group and slice by slice; returns sweep.json's content.
    SIGINT/SIGTERM saves every member of the running slice and raises `Interrupted`; then
    `resume=True` finishes the sweep with the results of an uninterrupted one."""
    workdir = Path(workdir)
    runs = prepare_sweep_dir(workdir, members, resume, overwrite)
    groups = group_members(members)

    def write() -> dict[str, Any]:
        record = sweep_record(config_name, workdir, runs, groups)
        run.write_json_atomic(workdir / SWEEP_FILE, record)
        return record

    write()
    finished = ("done", "diverged")
    progress = Progress(len(runs), sum(r.status in finished for r in runs.values()))
    compiled: dict[tuple, Any] = {}
    try:
        with run.StopFlag() as stop:
            for gi, group in enumerate(groups):
                todo = [runs[m.name] for m in group.members if runs[m.name].status not in finished]
                if not todo:
                    continue
                size = slice_size(group, max_parallel)
                by_start: dict[int, list[MemberRun]] = {}
                for r in todo:  # a slice's members continue from one step
                    by_start.setdefault(r.start_step() if resume else 0, []).append(r)
                for batch in (
                    rs[j : j + size] for rs in by_start.values() for j in range(0, len(rs), size)
                ):
                    where = f"group {gi + 1}/{len(groups)}, {len(batch)} members"
                    progress.info(
                        f"sweep: {where} ({', '.join(group.traced) or 'seed'} per member)"
                    )
                    trainer = SliceTrainer(
                        start_slice(group, batch, resume, overwrite),
                        config_name,
                        progress,
                        compiled,
                    )
                    try:
                        trainer.train(where, stop)
                    finally:
                        write()
                    progress.members_done(len(batch))
    finally:
        progress.close()
    return write()


def format_table(record: dict[str, Any]) -> str:
    """The members sorted by val loss, then mean ± std over seeds for each setting of the
    other swept keys (when seeds are swept)."""
    keys = list(record["swept"])
    members = record["members"]

    def loss(m: dict, split: str) -> float | None:
        return (m["loss"] or {}).get(split)

    def num(v: float | None) -> str:
        return "–" if v is None else f"{v:.4f}"

    ordered = sorted(members, key=lambda m: (loss(m, "val") is None, loss(m, "val") or 0.0))
    header = [*keys, "train", "val", "test", "status"]
    rows = [
        [_format_value(m["overrides"][k]) for k in keys]
        + [num(loss(m, s)) for s in SPLITS]
        + [m["status"]]
        for m in ordered
    ]
    lines = _columns(header, rows)
    others = [k for k in keys if k != "seed"]
    if "seed" in keys and len(record["swept"]["seed"]) > 1:
        settings: dict[tuple, list[dict]] = {}
        for m in members:
            setting = tuple(_format_value(m["overrides"][k]) for k in others)
            settings.setdefault(setting, []).append(m)
        stats = []
        for setting, ms in settings.items():
            cells, val_mean = [], math.inf
            for split in SPLITS:
                vals = [v for v in (loss(m, split) for m in ms) if v is not None]
                if not vals:
                    cells.append("–")
                    continue
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}")
                val_mean = statistics.mean(vals) if split == "val" else val_mean
            stats.append((val_mean, [*setting, str(len(ms)), *cells]))
        lines += ["", "mean ± std over seeds:"]
        lines += _columns([*others, "seeds", *SPLITS], [row for _, row in sorted(stats)])
    return "\n".join(lines)


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


# ---------------------------------------------------------------------------------------------
# Command line

HELP_EPILOG = """\
sweep keys:
  --sweep.KEY=V1,V2,...   values of any config key (typed by its default), dotted for a model
                          hyper-parameter: --sweep.model.n_hidden=50,100,200; the sweep is
                          the cross product of every --sweep.KEY
  --sweep.KEY=A:B         the integers A, A+1, ..., B-1, e.g. --sweep.seed=0:8
  --sweep.max_parallel=N  train at most N members at once (default: as many as fit in memory)
  --config.num_devices=N  spread the members over N devices (default: all; on CPU the command
                          makes one device per core)
  --config.KEY=VALUE      set a key for every member, as in train
Members are written to DIR/members/<name>/ like train's workdirs; DIR/sweep.json lists them.
"""


def parse_max_parallel(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"--sweep.max_parallel={text!r}: expected an integer") from None
    if value < 1:
        raise UserError(f"--sweep.max_parallel must be >= 1, got {value}")
    return value


def main(argv: Sequence[str]) -> int:
    use_cpu_cores()
    argv, overrides = config_lib.split_config_args(argv)
    argv, swept = split_sweep_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.sweep",
        description="Train many configs of one model at once (vmapped over members).",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="config name (configs/NAME.py) or path")
    parser.add_argument("--workdir", default=None, help="default: runs/sweep_<config name>")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted sweep")
    parser.add_argument("--overwrite", action="store_true", help="replace the workdir's sweep")
    args = parser.parse_args(argv)
    options = {k: t for k, t in swept if k in OPTION_KEYS}
    swept = [(k, t) for k, t in swept if k not in OPTION_KEYS]
    max_parallel = parse_max_parallel(options.get("max_parallel"))
    base, name = config_lib.resolve(args.config, overrides)
    members = expand_members(base, swept)
    workdir = Path(args.workdir or Path("runs") / f"sweep_{name}")
    try:
        record = run_sweep(
            members, name, workdir, resume=args.resume, overwrite=args.overwrite,
            max_parallel=max_parallel,
        )  # fmt: skip
    except Interrupted as stop:
        return 128 + stop.signum
    print(format_table(record))
    print(f"-> {workdir / SWEEP_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
