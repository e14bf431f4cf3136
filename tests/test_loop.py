"""The one training loop (loop.py) and what both commands get from it: divergence per member,
compile time per sweep group, the vocabulary check on a resumed sweep, the memory check before
training, and TensorBoard event files equal to metrics.jsonl across a resume."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, tiny_config, write_small_names

from jax_makemore import checkpoint as ckpt
from jax_makemore import memory
from jax_makemore.errors import DivergedError, Interrupted, UserError
from jax_makemore.logs import MemberProgress, NullLog
from jax_makemore.loop import ChunkOut, Loop, MemberRun
from jax_makemore.train import run_keys, train_and_evaluate
from jax_makemore.workdir import read_jsonl

#: the sweep module (`jax_makemore.sweep`, the attribute of the package, is the API function)
sweep = importlib.import_module("jax_makemore.sweep")

TINY = dict(n_hidden=16, n_embd=4, batch_size=16, steps_per_call=40)


class ScriptedProgram:
    """A loop.Program whose members' losses are given: losses_MxN[i, s] is member i's loss at
    step s + 1; it 'checkpoints' by recording the step."""

    def __init__(self, losses_MxN: np.ndarray) -> None:
        self.losses_MxN, self.step = losses_MxN, 0
        self.saved: list[list[int]] = [[] for _ in losses_MxN]

    def compile(self, k: int) -> None:
        pass

    def chunk(self, k: int) -> ChunkOut:
        out = self.losses_MxN[:, self.step : self.step + k]
        self.step += k
        return ChunkOut(out)

    def evaluate(self, averaged=False, watch=None):
        return [
            {"train": float(m[self.step - 1]), "val": None, "test": None} for m in self.losses_MxN
        ]

    def save(self, indices):
        for i in indices:
            if not self.saved[i] or self.saved[i][-1] != self.step:
                self.saved[i].append(self.step)

    def latest_checkpoint(self, i):
        return self.saved[i][-1] if self.saved[i] else None

    def learning_rate(self, i, step):
        return 0.1


class Quiet:
    def chunk(self, *args):
        pass

    def evaluated(self, *args):
        pass

    def info(self, text):
        self.last = text


def scripted_loop(tmp_path: Path, losses_MxN: np.ndarray, **config_values):
    config, _ = tiny_config("mlp", **TINY)
    config.num_steps = losses_MxN.shape[1]
    config.steps_per_call, config.eval_every, config.checkpoint_every = 10, 20, 20
    for key, value in config_values.items():
        config[key] = value
    members = [
        MemberRun(tmp_path / f"m{i}", config, NullLog(), name=f"m{i}")
        for i in range(len(losses_MxN))
    ]
    for m in members:
        m.workdir.mkdir()
    program = ScriptedProgram(losses_MxN)
    loop = Loop(program, members, config, Quiet(), {"config": "t", "num_params": 1})
    return loop, program, members


def test_a_diverging_member_stops_alone_with_or_without_a_checkpoint(tmp_path):
    losses_MxN = np.full((3, 60), 2.0)
    losses_MxN[1, 14] = np.nan  # before the first checkpoint (step 20)
    losses_MxN[2, 44] = 1e3  # after the checkpoint at step 40, above divergence_loss 100
    loop, program, members = scripted_loop(tmp_path, losses_MxN)
    loop.run()
    assert [m.status for m in members] == ["done", "diverged", "diverged"]
    assert "at step 15 (" in members[1].error and "no checkpoint was written" in members[1].error
    assert "at step 45 (" in members[2].error
    assert f"checkpoint 40 in '{members[2].workdir}' is kept" in members[2].error
    assert program.saved == [[20, 40, 60], [], [20, 40]]
    assert members[0].results["steps"] == 60 and members[1].results is None
    assert json.loads((members[0].workdir / "results.json").read_text())["loss"]["train"] == 2.0
    assert not (members[1].workdir / "results.json").exists()


def test_a_signal_saves_the_live_members_and_stops_after_the_chunk(tmp_path):
    losses_MxN = np.full((2, 60), 2.0)
    loop, program, members = scripted_loop(tmp_path, losses_MxN)

    class SignalAtFirstChunk(Quiet):
        def chunk(self, step, *args):
            if step == 10:
                os.kill(os.getpid(), signal.SIGTERM)

    loop.progress = SignalAtFirstChunk()
    with pytest.raises(Interrupted) as stop:
        loop.run()
    assert stop.value.signum == signal.SIGTERM
    assert program.step == 10 and program.saved == [[10], [10]]
    assert "SIGTERM: saved checkpoint at step 10" in loop.progress.last


def test_single_run_divergence_before_any_checkpoint_says_none_was_written(tmp_path):
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=80, learning_rate=1e6, **TINY)
    with pytest.raises(DivergedError, match="no checkpoint was written"):
        train_and_evaluate(config, name, tmp_path / "run")
    assert not ckpt.has_checkpoint(tmp_path / "run")


def sweep_config(data, **overrides):
    values = dict(TINY, num_steps=80, eval_every=80, checkpoint_every=40)
    values.update(overrides)
    return tiny_config("mlp", data, **values)


@pytest.mark.heavy
def test_a_diverging_sweep_member_is_recorded_while_the_others_finish(tmp_path):
    data = write_small_names(tmp_path)
    config, name = sweep_config(data)
    # divergence_loss is a host key: the members share one program, one stops at its threshold
    members = sweep.expand_members(config, [("divergence_loss", "100.0,1.5")])
    record = sweep.run_sweep(members, name, tmp_path / "s")
    by_name = {m["name"]: m for m in record["members"]}
    done, diverged = by_name["divergence_loss=100.0"], by_name["divergence_loss=1.5"]
    assert done["status"] == "done" and done["steps"] == 80 and done["loss"]["val"] is not None
    assert diverged["status"] == "diverged" and diverged["loss"] is None
    assert "at step 1 (" in diverged["error"] and "no checkpoint was written" in diverged["error"]
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert {m["name"]: m["status"] for m in saved["members"]} == {
        "divergence_loss=100.0": "done",
        "divergence_loss=1.5": "diverged",
    }


@pytest.mark.heavy
def test_compile_seconds_are_the_groups_in_every_slice(tmp_path):
    data = write_small_names(tmp_path)
    config, name = sweep_config(data)
    members = sweep.expand_members(config, [("seed", "0:2")])
    record = sweep.run_sweep(members, name, tmp_path / "s", max_parallel=1)  # two slices
    seconds = [
        json.loads((tmp_path / "s" / m["workdir"] / "results.json").read_text())["compile_seconds"]
        for m in record["members"]
    ]
    assert seconds[0] > 0 and seconds[0] == seconds[1] == record["groups"][0]["compile_seconds"]


@pytest.mark.heavy
def test_a_resumed_sweep_refuses_a_checkpoint_of_another_vocabulary(tmp_path, monkeypatch):
    data = write_small_names(tmp_path)
    config, name = sweep_config(data)
    members = sweep.expand_members(config, [("seed", "0:2")])

    def interrupt(self, *args):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MemberProgress, "chunk", interrupt)
    with pytest.raises(Interrupted):
        sweep.run_sweep(members, name, tmp_path / "s")
    monkeypatch.undo()
    data.write_text(data.read_text() + "zoë\n", encoding="utf-8")  # a new character
    members = sweep.expand_members(sweep_config(data)[0], [("seed", "0:2")])
    with pytest.raises(UserError, match="different vocabulary"):
        sweep.run_sweep(members, name, tmp_path / "s", resume=True)


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def keepsake(workdir: Path) -> dict[str, bytes]:
    """A workdir holding a file and a checkpoint that a refused run must not touch."""
    workdir.mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
    (workdir / "checkpoints" / "7").mkdir(parents=True)
    (workdir / "checkpoints" / "7" / "x").write_text("kept")
    return {str(p): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}


@pytest.mark.heavy  # compile-bound (10-20 s on 2 cores)
def test_a_step_too_large_for_memory_names_the_long_line_and_the_flag(tmp_path, monkeypatch):
    names = write_small_names(tmp_path, 300).read_text().splitlines()
    names.insert(41, "a" * 3000)  # line 42
    data = tmp_path / "long.txt"
    data.write_text("\n".join(names) + "\n")
    before = keepsake(tmp_path / "w")
    config, name = tiny_config("transformer", data, num_steps=10, steps_per_call=10)
    monkeypatch.setattr(memory, "available_bytes", lambda: 16 * memory.GB)
    with pytest.raises(UserError) as err:
        train_and_evaluate(config, name, tmp_path / "w", overwrite=True)
    text = str(err.value)
    assert "\n" not in text and "but 16.0 GB are available" in text
    assert f"line 42 of data file '{data}' has 3000 characters" in text
    assert "--config.max_word_length=" in text
    after = {str(p): p.read_bytes() for p in (tmp_path / "w").rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.heavy
def test_a_batch_too_large_for_memory_exits_2_naming_the_batch_size(tmp_path):
    data = write_small_names(tmp_path, 300)
    before = keepsake(tmp_path / "w")
    proc = run_cli(
        "train", "--config", "mlp", "--workdir", str(tmp_path / "w"), "--overwrite",
        f"--config.data_path={data}", "--config.batch_size=50000000", "--config.num_steps=10",
    )  # fmt: skip
    line = one_error_line(proc)
    needed = float(line.split("needs about ")[1].split(" GB")[0])
    assert needed > 100  # 50 million windows through a 200-unit hidden layer
    assert "batch_size=50000000" in line and "--config.batch_size" in line
    after = {str(p): p.read_bytes() for p in (tmp_path / "w").rglob("*") if p.is_file()}
    assert after == before


def read_events(workdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(workdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_equal_metrics_and_results(tmp_path):
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=120, eval_every=40, **TINY)
    config.log_diagnostics, config.diagnostics_every = True, 40
    results = train_and_evaluate(config, name, tmp_path / "run")
    events = read_events(tmp_path / "run")
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")

    def same(curve, expected):
        assert [s for s, _ in curve] == [s for s, _ in expected]
        assert [v for _, v in curve] == pytest.approx([v for _, v in expected], rel=1e-6)

    same(events["train/loss"], [(r["step"], r["loss"]) for r in metrics])
    same(events["lr"], [(r["step"], r["lr"]) for r in metrics])
    for split in ("train", "val", "test"):
        evaluated = [(r["step"], r["split_loss"][split]) for r in metrics if "split_loss" in r]
        assert [s for s, _ in evaluated] == [40, 80, 120]
        same(events[f"loss/{split}"], evaluated)
        assert events[f"loss/{split}"][-1][1] == pytest.approx(results["loss"][split], rel=1e-6)
    assert any(tag.startswith("tanh/") and tag.endswith("/saturated") for tag in events)


@pytest.mark.heavy
def test_a_resume_after_a_crash_logs_each_step_once(tmp_path):
    data = write_small_names(tmp_path)
    common = dict(num_steps=120, eval_every=40, checkpoint_every=40, keep_checkpoints=5, **TINY)
    config, name = tiny_config("mlp", data, **common)
    train_and_evaluate(config, name, tmp_path / "straight")
    shutil.copytree(tmp_path / "straight", tmp_path / "crashed")
    for step in (80, 120):  # as if killed after step 120 was logged but only 40 was saved
        shutil.rmtree(ckpt.checkpoint_dir(tmp_path / "crashed") / str(step))
    (tmp_path / "crashed" / "results.json").unlink()
    config, name = tiny_config("mlp", data, **common)
    train_and_evaluate(config, name, tmp_path / "crashed", resume=True)
    straight = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_jsonl(tmp_path / "crashed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in straight] == [40, 80, 120]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    events = read_events(tmp_path / "crashed")
    assert [s for s, _ in events["train/loss"]] == [40, 80, 120]
    assert [v for _, v in events["train/loss"]] == pytest.approx([r["loss"] for r in straight])


@pytest.mark.heavy  # compile-bound (10-20 s on 2 cores)
def test_packed_sweep_members_equal_packed_single_runs_and_log_events(tmp_path):
    data = write_small_names(tmp_path, 600)
    values = dict(
        n_layer=1, n_embd=16, n_head=2, num_steps=30, steps_per_call=15, eval_every=30,
        checkpoint_every=30,
    )  # fmt: skip
    config, name = tiny_config("transformer", data, **values)
    assert config.packed and config.pack_len == 24  # the config's packed default
    members = sweep.expand_members(config, [("seed", "0:2")])
    record = sweep.run_sweep(members, name, tmp_path / "s")
    for m in members:
        single = train_and_evaluate(m.config, name, tmp_path / m.name)
        entry = next(e for e in record["members"] if e["name"] == m.name)
        member_dir = tmp_path / "s" / entry["workdir"]
        results = json.loads((member_dir / "results.json").read_text())
        assert results["words_seen"] == single["words_seen"] > 30 * 24  # whole words, packed
        assert results["chars_seen"] == single["chars_seen"]
        for split, value in single["loss"].items():
            assert abs(entry["loss"][split] - value) < 1e-5, (m.name, split)
        events = read_events(member_dir)
        assert [s for s, _ in events["train/loss"]] == [15, 30]
        assert events["loss/val"][-1][1] == pytest.approx(results["loss"]["val"], rel=1e-6)


@pytest.mark.heavy
def test_words_and_characters_seen_count_the_drawn_batches(tmp_path):
    import jax

    from jax_makemore.data import dataset_from_config

    data = write_small_names(tmp_path, 600)
    values = dict(n_layer=1, n_embd=16, n_head=2, num_steps=20, steps_per_call=10, batch_size=8)
    config, name = tiny_config("transformer", data, packed=False, **values)
    results = train_and_evaluate(config, name, tmp_path / "run")
    _, Y = dataset_from_config(config).split("train")
    data_key = run_keys(config.seed)[1]
    chars = 0
    for step in range(20):  # the rows each padded step drew, as batches.draw_batch draws them
        idx = jax.random.randint(jax.random.fold_in(data_key, step), (8,), 0, len(Y))
        chars += int((Y[np.asarray(idx)] >= 0).sum())
    assert results["words_seen"] == 20 * 8 and results["chars_seen"] == chars
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["words_seen"] for r in metrics] == [80, 160]


@pytest.mark.heavy  # compile-bound (10-20 s on 2 cores)
def test_a_packed_sweep_split_over_two_devices_equals_one_device(tmp_path):
    data = write_small_names(tmp_path, 600)
    values = dict(
        n_layer=1, n_embd=16, n_head=2, num_steps=20, steps_per_call=10, eval_every=20,
        checkpoint_every=20,
    )  # fmt: skip
    config, name = tiny_config("transformer", data, **values)
    members = sweep.expand_members(config, [("seed", "0:2")])
    one_device = sweep.run_sweep(members, name, tmp_path / "one")
    flags = [f"--config.{k if k in config else 'model.' + k}={v}" for k, v in values.items()]
    proc = run_cli(
        "sweep", "--config", "transformer", "--sweep.seed=0:2", f"--config.data_path={data}",
        "--workdir", str(tmp_path / "two"), *flags,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    two_devices = json.loads((tmp_path / "two" / "sweep.json").read_text())
    for a, b in zip(one_device["members"], two_devices["members"], strict=True):
        assert a["name"] == b["name"] and b["status"] == "done"
        for split in ("train", "val", "test"):
            assert abs(a["loss"][split] - b["loss"][split]) < 1e-5
