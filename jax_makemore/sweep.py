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

The parts: the members and their groups (`sweep_members.py`), a group's stacked program
(`sweep_program.py`), the sweep directory, sweep.json and its table (`sweep_record.py`); this
module runs them and holds the command line.

Shape letters: M members of a slice (padded to whole tiles on every device), K steps of one
compiled chunk, R tiles, I members of one tile, P evaluation batches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jax_makemore import checkpoint as ckpt
from jax_makemore import config as config_lib
from jax_makemore.errors import Interrupted, UserError, run_cli
from jax_makemore.logs import MemberProgress, RunLog
from jax_makemore.loop import Loop, MemberRun
from jax_makemore.rundir import SWEEP_FILE, write_json_atomic
from jax_makemore.sweep_members import Group, Member, expand_members, group_members
from jax_makemore.sweep_program import StackedProgram, member_states, slices, use_cpu_cores
from jax_makemore.sweep_record import format_table, prepare_sweep_dir, sweep_record
from jax_makemore.train import num_params
from jax_makemore.workdir import WorkdirLock, os_errors

#: The names a caller of the sweep imports from here (a notebook, a benchmark).
__all__ = [
    "SWEEP_FILE",
    "Group",
    "Member",
    "expand_members",
    "group_members",
    "main",
    "run_sweep",
    "use_cpu_cores",
]
#: `--sweep.KEY` options that are not config keys.
OPTION_KEYS = ("max_parallel",)


# ---------------------------------------------------------------------------------------------
# Running the sweep


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
    with WorkdirLock(workdir):  # held until the sweep ends
        return _run_sweep(members, config_name, workdir, resume, overwrite, max_parallel)


def _run_sweep(
    members: Sequence[Member],
    config_name: str,
    workdir: Path,
    resume: bool,
    overwrite: bool,
    max_parallel: int | None,
) -> dict[str, Any]:
    with os_errors(workdir):
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
        program=program,
        members=batch,
        config=group.config,
        progress=progress,
        results_base={"config": config_name, "num_params": num_params(group.abstract_state.params)},
        saved_what="every member of the running slice",
        compile_seconds=lambda: group.compile_seconds,
    )
    try:
        loop.run()
    finally:
        for r in batch:
            r.log.close()


# ---------------------------------------------------------------------------------------------
# Command line


def split_sweep_args(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate `--sweep.KEY=VALUES` / `--sweep.KEY VALUES` from the other arguments."""
    rest, swept = config_lib.split_config_args(argv, prefix="sweep")
    keys = [key for key, _ in swept]
    for key in keys:
        if keys.count(key) > 1:
            raise UserError(f"--sweep.{key} is given twice")
    return rest, swept


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
            members,
            name,
            workdir,
            resume=args.resume,
            overwrite=args.overwrite,
            max_parallel=max_parallel,
        )
    except Interrupted as stop:
        return 128 + stop.signum
    print(format_table(record))
    print(f"-> {workdir / SWEEP_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
