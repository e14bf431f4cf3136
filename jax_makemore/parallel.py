"""Data parallelism with `jax.sharding`, on one host or across processes with `jax.distributed`.

One `Mesh` with a single `data` axis spans the devices. Params, batch_stats, optimizer state,
the data key and the training split are replicated on every device; each step draws the global
batch indices from `fold_in(data_key, step)` exactly as on one device, gathers the rows and
constrains the gathered batch to be sharded along `data`, so every device computes the forward
and backward pass of its slice only. Gradients and BatchNorm statistics are means over the
global batch (XLA inserts the all-reduces), so N devices train like one device with the same
global batch, up to float summation order.

Why the training split is replicated, not sharded: a names data set is a few MB, and random
indices over a replicated array need no communication, while a sharded array would need an
all-to-all per step. Every process loads the same file with the same seed, so in a multi-process
run each process already holds the whole split; its devices gather their own slice of every
global batch from it, and the per-step index draw is identical on every device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jax_makemore.errors import UserError

#: The mesh axis that the batch is split along.
DATA_AXIS = "data"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> bool:
    """Join a multi-process run with `jax.distributed.initialize()` before JAX touches a device.

    Runs when a coordinator address is given (flag or `JAX_COORDINATOR_ADDRESS`), or when
    `auto` is set (TPU pods, SLURM and other clusters JAX detects by itself). The process count
    and id fall back to `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`. Returns True when initialised.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if not (coordinator_address or auto):
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise UserError("--num_processes/--process_id need --coordinator_address HOST:PORT")
        return False
    if num_processes is not None and num_processes < 1:
        raise UserError(f"--num_processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise UserError(f"--process_id must be in [0, {num_processes}), got {process_id}")
    # CPU collectives across processes (harmless on GPU/TPU, where the backend has its own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (ValueError, RuntimeError) as err:
        raise UserError(f"jax.distributed.initialize failed: {err}") from err
    return True


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh with axis `data` over `num_devices` devices (0: every device of every process)."""
    available = jax.device_count()
    if num_devices < 0:
        raise UserError(f"config key num_devices must be >= 0, got {num_devices}")
    if num_devices > available:
        raise UserError(
            f"config key num_devices={num_devices} but only {available} devices are visible "
            f"({jax.devices()[0].platform})"
        )
    n = num_devices or available
    if jax.process_count() > 1 and n != available:
        raise UserError(
            f"config key num_devices={num_devices}: a run over {jax.process_count()} processes "
            f"uses all {available} devices (set num_devices=0)"
        )
    devices = jax.devices()[:n]
    try:  # jax.make_mesh orders TPU chips into a ring (faster all-reduce); elsewhere a no-op
        return jax.make_mesh((n,), (DATA_AXIS,), (AxisType.Auto,), devices=devices)
    except (ValueError, NotImplementedError):  # e.g. a multi-slice TPU or an odd subset
        return Mesh(np.array(devices), (DATA_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """The global batch is split evenly: `batch_size` must be a multiple of the device count."""
    n = mesh.devices.size
    if batch_size % n:
        raise UserError(
            f"config key batch_size={batch_size} is not divisible by the {n} devices "
            f"(num_devices={n}); use a multiple of {n}"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split along `data`, the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree of arrays, identical in every process, on every device of the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x: Any) -> jax.Array:
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def shard_batch(x_B: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside jit: split a global batch along `data` (a no-op without a mesh)."""
    if mesh is None:
        return x_B
    return jax.lax.with_sharding_constraint(x_B, batch_sharded(mesh))


def jit_chunk(chunk: Callable, mesh: Mesh) -> Callable:
    """`chunk(state, X_NxT, Y_N) -> (state, losses_K)` compiled with explicit shardings: all
    inputs and outputs replicated (the batch is sharded inside), the state buffers donated."""
    rep = replicated(mesh)
    return jax.jit(chunk, in_shardings=(rep, rep, rep), out_shardings=(rep, rep), donate_argnums=0)


def local_copy(tree: Any) -> Any:
    """This process's copy of a replicated pytree, on one local device: evaluation and sampling
    then run on one device per process instead of redundantly on every device of the mesh."""

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            return x.addressable_data(0)
        return x

    return jax.tree.map(one, tree)


def is_primary() -> bool:
    """Process 0 writes logs, metrics and results; every process takes part in checkpoints."""
    return jax.process_index() == 0


def on_primary(fn: Callable[[], bool]) -> bool:
    """Run `fn` (a file-system step returning a bool) on process 0 only and broadcast its
    result; a UserError there stops every process instead of leaving the others waiting."""
    if jax.process_count() == 1:
        return fn()
    from jax.experimental import multihost_utils

    code, error = 0, None
    if is_primary():
        try:
            code = int(bool(fn()))
        except UserError as err:
            code, error = 2, err
    code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if error is not None:
        raise error
    if code == 2:
        raise UserError("process 0 stopped with an error (see its output)")
    return bool(code)


def any_process(flag: bool) -> bool:
    """True when `flag` is true in any process (one tiny all-gather in a multi-process run):
    a SIGINT/SIGTERM that reaches one process stops all of them at the same chunk, so the
    checkpoint that every process must take part in is written by all of them."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def add_flags(parser: Any) -> None:
    """The multi-process flags of `python -m jax_makemore.train` (argparse)."""
    group = parser.add_argument_group(
        "several processes (jax.distributed); default from JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID"
    )
    group.add_argument("--coordinator_address", default=None, help="HOST:PORT of process 0")
    group.add_argument("--num_processes", type=int, default=None, help="processes in the run")
    group.add_argument("--process_id", type=int, default=None, help="this process, 0-based")
    group.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() with auto-detection (TPU pods, SLURM, ...)",
    )


def initialize_from_flags(args: Any) -> bool:
    return initialize(
        args.coordinator_address, args.num_processes, args.process_id, args.distributed
    )
