"""Save and restore the whole train state with its config and vocabulary (orbax-checkpoint).

Layout: `<workdir>/checkpoints/<step>/{state,meta}`. orbax writes each step into a temporary
directory and renames it when complete, so a crash mid-save leaves the previous step readable;
only the last `keep_checkpoints` steps are kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jax_makemore import DEFAULT_DATA_PATH, rundir
from jax_makemore.config import base_config
from jax_makemore.data import Vocab
from jax_makemore.errors import UserError
from jax_makemore.models import model_names, registry

logging.getLogger("absl").setLevel(logging.ERROR)  # orbax is chatty at WARNING

#: How a checkpoint names the shipped data file instead of its absolute path (a clone's or a
#: site-packages'), so that a workdir resumes under any install of the package.
PACKAGED_DATA_PATH = "jax_makemore:datasets/names.txt"
#: Where the default data file lived before it became package data: checkpoints written then
#: store this absolute path (`<clone>/data/names.txt`).
LEGACY_DEFAULT_DATA_PATH = Path(__file__).resolve().parents[1] / "data" / "names.txt"


def portable_data_path(data_path: str) -> str:
    """The `data_path` a checkpoint stores: PACKAGED_DATA_PATH for the shipped file (the
    default), any other path as given."""
    return PACKAGED_DATA_PATH if data_path == str(DEFAULT_DATA_PATH) else data_path


def local_data_path(stored: str) -> str:
    """The `data_path` that a stored one means in this install: the shipped file for
    PACKAGED_DATA_PATH and for the old default of a checkpoint written before the data moved
    (this clone's `data/names.txt`, or an absolute `.../data/names.txt` whose bytes are the
    shipped file's); any other path as stored."""
    if stored == PACKAGED_DATA_PATH:
        return str(DEFAULT_DATA_PATH)
    path = Path(stored)
    if path.is_absolute() and path.parts[-2:] == ("data", "names.txt"):
        if path == LEGACY_DEFAULT_DATA_PATH or _same_bytes(path, DEFAULT_DATA_PATH):
            return str(DEFAULT_DATA_PATH)
    return stored


def _same_bytes(a: Path, b: Path) -> bool:
    return a.is_file() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def checkpoint_dir(workdir: str | Path) -> Path:
    return rundir.checkpoints_dir(workdir)


def make_manager(
    workdir: str | Path, keep: int = 2, read_only: bool = False
) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=False,  # the write is done when save() returns
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def has_checkpoint(workdir: str | Path) -> bool:
    directory = checkpoint_dir(workdir)
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its run besides the arrays: the resolved config, the
    vocabulary, and facts about the data the model was built for (the padded word length of
    the sequences layout), which are not config keys."""

    config: ml_collections.ConfigDict
    config_name: str
    vocab: Vocab
    step: int
    seq_len: int


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    config: ml_collections.ConfigDict,
    config_name: str,
    vocab: Vocab,
    seq_len: int,
) -> None:
    """Write `state` (any pytree of arrays) at `step` together with config, vocab and data facts
    (the shipped data file as PACKAGED_DATA_PATH, not where this install keeps it)."""
    stored = json.loads(config.to_json())
    stored["data_path"] = portable_data_path(stored["data_path"])
    meta = {
        "config_name": config_name,
        "config": stored,
        "vocab": vocab.to_json(),
        "data": {"seq_len": int(seq_len)},
    }
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
    )
    manager.wait_until_finished()


def restore_meta(workdir: str | Path, step: int | None = None) -> CheckpointMeta:
    """The metadata of the latest (or given) checkpoint in `workdir`."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"workdir '{workdir}' is a file, not a directory")
    if not has_checkpoint(workdir):
        raise UserError(
            f"workdir '{workdir}' has no checkpoint; train first with python -m jax_makemore.train"
        )
    manager = make_manager(workdir, read_only=True)
    step = manager.latest_step() if step is None else step
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as err:  # orbax raises many kinds; all mean the same to a user
        raise UserError(
            f"checkpoint {step} in '{checkpoint_dir(workdir)}' cannot be read ({type(err).__name__})"
        ) from err
    saved = meta.get("config", {})
    if not isinstance(saved.get("model"), dict) or "data" not in meta:
        raise UserError(
            f"checkpoint {step} in '{checkpoint_dir(workdir)}' was written by an older "
            "jax_makemore (before config.model became a sub-config); train it again"
        )
    config = _with_defaults(saved)
    config.data_path = local_data_path(config.data_path)
    return CheckpointMeta(
        config,
        meta["config_name"],
        Vocab.from_json(meta["vocab"]),
        step,
        meta["data"]["seq_len"],
    )


def _with_defaults(saved: dict[str, Any]) -> ml_collections.ConfigDict:
    """The saved config over today's defaults for its model, so that a key added to the
    package since the checkpoint was written reads its default instead of failing, and a
    model key since removed (a hyper-parameter turned into a call-time choice) is dropped."""
    name = saved["model"]["name"]
    if name not in registry():
        raise UserError(
            f"the checkpoint holds model {name!r}, which is not registered in this process "
            f"(a model from outside the package: jax_makemore.register_model it first); "
            f"registered: {', '.join(model_names())}"
        )
    config = base_config(name)
    saved = {**saved, "model": {k: v for k, v in saved["model"].items() if k in config.model}}

    def merge(node: ml_collections.ConfigDict, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
                merge(node[key], value)
            else:
                with node.unlocked():
                    node[key] = tuple(value) if isinstance(value, list) else value

    merge(config, saved)
    return config


def restore_state(workdir: str | Path, step: int, target: Any | None = None) -> Any:
    """The state pytree saved at `step`; with `target` (an abstract or concrete state of the
    same structure) it comes back with that structure, else as nested dicts of arrays."""
    manager = make_manager(workdir, read_only=True)
    try:
        if target is None:  # onto this process's first device, whatever mesh saved it
            target = _single_device_target(checkpoint_dir(workdir) / str(step) / "state")
        args = ocp.args.StandardRestore(target)
        return manager.restore(step, args=ocp.args.Composite(state=args))["state"]
    except Exception as err:
        raise UserError(
            f"checkpoint {step} in '{checkpoint_dir(workdir)}' cannot be restored "
            f"({type(err).__name__}); was it written by a different model or config?"
        ) from err


def _single_device_target(directory: Path) -> Any:
    """Shapes and dtypes of a saved state tree, placed on one local device: a checkpoint
    written on a mesh of N devices (parallel.py) then restores in a one-device process."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = ocp.StandardCheckpointer().metadata(directory).item_metadata.tree
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
