"""`python -m jax_makemore.sweep --config NAME --sweep.KEY=v1,v2,... [--sweep.seed=0:8]
[--sweep.max_parallel=N] [--workdir DIR] [--resume] [--overwrite] [--config.KEY=VALUE ...]`:
train the cross product of the swept values, many models in one compiled program.

Members whose programs agree -- the same static config values (every key that is not traced:
not the seed, an optimizer key of `TRACED_KEYS` or a model float that traces) and so the same
array shapes -- form a group. A group trains as one program: the train step of `train.py` is
`jax.vmap`ped over a leading member axis of the stacked params, batch_stats, opt_state, step
and data_key, and `steps_per_call` steps are fused in one `lax.scan`. Values that differ inside
a group enter that program as traced per-member arrays, not as constants, so one compilation
serves every member: the optimizer and schedule keys of `TRACED_KEYS` (the optax chain rebuilt
from per-member arrays, warm-up length included) and a model's float hyper-parameters (the
Flax module is built inside the vmapped function with a traced field, e.g. bn_momentum or a
dropout rate) when its code does not branch on them in Python. Groups run one after another, each
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
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jax_makemore import checkpoint as ckpt
from jax_makemore import config as config_lib
from jax_makemore.batches import Packing, packing_from_config
from jax_makemore.data import SPLITS, Dataset, dataset_from_config
from jax_makemore.errors import Interrupted, UserError, run_cli
from jax_makemore.logs import MemberProgress, RunLog
from jax_makemore.loop import Loop, MemberRun
from jax_makemore.models import ModelSpec, get_spec
from jax_makemore.optim import TRACED_KEYS
from jax_makemore.sweep_program import StackedProgram, member_states, slices, use_cpu_cores
from jax_makemore.train import TrainState, create_train_state, make_train_step, num_params
from jax_makemore.workdir import RESULTS_FILE, flatten_config, write_json_atomic

#: Top-level keys that may differ inside a group because only the host uses them: the seed
#: gives each member its own init and data keys (state leaves); the others are checked or
#: ignored per member.
HOST_KEYS = ("seed", "divergence_loss", "num_samples", "tensorboard")
#: `--sweep.KEY` options that are not config keys.
OPTION_KEYS = ("max_parallel",)
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
    """`config_lib.get_value`, with a list as a tuple (members are grouped by these values)."""
    node = config_lib.get_value(config, key)
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
    given as a traced value, found by tracing one train step and one evaluation with it:
    False when its code needs the value in Python (an `if` on it, a shape from it). A dropout
    rate traces: `layers.Dropout` takes a traced rate (flax.linen.Dropout would not, as it
    tests `rate == 0` in Python)."""
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
    packing: Packing | None = None  # the members' packed step (packed sequence models)
    compile_seconds: float = 0.0  # of every program compiled for the group, all slices

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
        data_id = (
            c.data_path,
            c.split_seed,
            c.split_by,
            tuple(c.split_fractions),
            c.max_word_length,
        )
        data_id += (spec.layout, c.model.get("block_size"))
        if data_id not in datasets:
            datasets[data_id] = dataset_from_config(c)
        ds = datasets[data_id]
        flat = flatten_config(c)
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
        g.packing = packing_from_config(g.config, g.ds.split("train")[1], g.ds.seq_len)
    return list(groups.values())


def abstract_state(group: Group) -> TrainState:
    """The group's train state as shapes and dtypes (nothing is computed)."""
    model, key = group.model(), jax.random.PRNGKey(0)
    return jax.eval_shape(
        lambda: create_train_state(group.config, model, key, key, group.ds.seq_len)
    )


# ---------------------------------------------------------------------------------------------
# The sweep: its directory, sweep.json, the table


def prepare_sweep_dir(
    workdir: Path, members: Sequence[Member], resume: bool, overwrite: bool
) -> dict[str, MemberRun]:
    """The member runs by name (pending); with `resume`, the done and diverged ones as
    sweep.json says. A workdir that already holds a sweep needs --resume or --overwrite."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"workdir '{workdir}' is a file, not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    runs = {
        m.name: MemberRun(
            workdir / MEMBERS_DIR / _dir_name(m.name), m.config, None, "pending", name=m.name
        )
        for m in members
    }
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
        if entry["status"] == "done" and (r.workdir / RESULTS_FILE).is_file():
            r.status = "done"
            r.results = json.loads((r.workdir / RESULTS_FILE).read_text(encoding="utf-8"))
        elif entry["status"] == "diverged":
            r.status, r.error = "diverged", entry.get("error")
    return runs


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def sweep_record(
    config_name: str,
    workdir: Path,
    members: Sequence[Member],
    runs: dict[str, MemberRun],
    groups: Sequence[Group],
) -> dict[str, Any]:
    """The content of sweep.json: the swept values, and per member its overrides, group,
    status, steps and split losses."""
    keys = list(members[0].values)
    group_of = {m.name: gi for gi, g in enumerate(groups) for m in g.members}
    return {
        "config": config_name,
        "swept": {k: list(dict.fromkeys(_jsonable(m.values[k]) for m in members)) for k in keys},
        "members": [
            {
                "name": m.name,
                "workdir": str(r.workdir.relative_to(workdir)),
                "overrides": {k: _jsonable(v) for k, v in m.values.items()},
                "group": group_of[m.name],
                "status": r.status,
                "error": r.error,
                "steps": r.results["steps"] if r.results else None,
                "loss": r.results["loss"] if r.results else None,
            }
            for m, r in ((m, runs[m.name]) for m in members)
        ],
        "groups": [
            {"members": len(g.members), "traced": g.traced, "compile_seconds": g.compile_seconds}
            for g in groups
        ],
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
        record = sweep_record(config_name, workdir, members, runs, groups)
        write_json_atomic(workdir / SWEEP_FILE, record)
        return record

    write()
    finished = ("done", "diverged")
    progress = MemberProgress(len(runs), sum(r.status in finished for r in runs.values()))
    compiled: dict[tuple, Any] = {}
    try:
        for gi, group in enumerate(groups):
            todo = [runs[m.name] for m in group.members if runs[m.name].status not in finished]
            for batch in slices(group, todo, resume, max_parallel):
                progress.where = f"group {gi + 1}/{len(groups)}, {len(batch)} members"
                progress.info(
                    f"sweep: {progress.where} ({', '.join(group.traced) or 'seed'} per member)"
                )
                try:
                    train_slice(group, batch, config_name, progress, compiled, resume, overwrite)
                finally:
                    write()
                progress.members_done(len(batch))
    finally:
        progress.close()
    return write()


def train_slice(
    group: Group,
    batch: list[MemberRun],
    config_name: str,
    progress: MemberProgress,
    compiled: dict,
    resume: bool,
    overwrite: bool,
) -> None:
    """Train one slice of a group with the one training loop, each member logging into its
    own run directory."""
    states = member_states(group, batch, resume, overwrite)
    for r, state in zip(batch, states, strict=True):
        r.status = "running"
        resume_step = int(state.step) if resume and ckpt.has_checkpoint(r.workdir) else None
        r.log = RunLog(r.workdir, resume_step, r.config.tensorboard)
    program = StackedProgram(group, batch, states, config_name, compiled)
    loop = Loop(
        program, batch, group.config, progress,
        {"config": config_name, "num_params": num_params(group.abstract_state.params)},
        saved_what="every member of the running slice",
        compile_seconds=lambda: group.compile_seconds,
    )  # fmt: skip
    try:
        loop.run()
    finally:
        for r in batch:
            r.log.close()


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
    parser.add_argument(
        "--config", required=True, help="config name (jax_makemore/configs/NAME.py) or path"
    )
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
