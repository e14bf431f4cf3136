"""Hard stops and big files: evaluations on a fixed sample of rows that stop at a signal and
resume exactly, torn JSON-lines logs, workdir OS errors and the workdir lock."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import numpy as np
import pytest
from conftest import REPO, run_cli, tiny_config, write_small_names

from jax_makemore import checkpoint as ckpt
from jax_makemore import evaluation, rundir
from jax_makemore.data import SPLITS, dataset_from_config
from jax_makemore.errors import Interrupted, UserError
from jax_makemore.evaluation import EvalWatch, eval_set, sample_indices
from jax_makemore.logs import _Display
from jax_makemore.loss import evaluate_loss, make_eval_step
from jax_makemore.train import build_run, train_and_evaluate
from jax_makemore.workdir import WorkdirLock, make_dir, prepare_workdir

sweep = importlib.import_module("jax_makemore.sweep")

TINY = dict(n_hidden=16, n_embd=4, batch_size=16, steps_per_call=40, eval_every=40)


# ---------------------------------------------------------------------------------------------
# The rows an evaluation scores


def test_sample_indices_are_a_fixed_seeded_subset_and_none_for_a_small_split():
    a = sample_indices(10_000, 300, seed=7, split="val")
    assert a is not None and len(a) == 300 and len(np.unique(a)) == 300
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 10_000
    np.testing.assert_array_equal(a, sample_indices(10_000, 300, seed=7, split="val"))
    assert not np.array_equal(a, sample_indices(10_000, 300, seed=7, split="test"))
    assert not np.array_equal(a, sample_indices(10_000, 300, seed=8, split="val"))
    assert sample_indices(300, 300, seed=7, split="val") is None


def test_names_txt_is_scored_whole_under_the_default_cap():
    config, _ = tiny_config("mlp")
    ds = dataset_from_config(config)
    es = eval_set(ds, config.eval_max_rows, config.split_seed)
    assert not es.sampled and es.coverage() == {}
    for s in SPLITS:
        assert es.arrays[s][0] is ds.split(s)[0]  # the split itself, in order
    seq_config, _ = tiny_config("transformer")
    assert not eval_set(dataset_from_config(seq_config), 500_000, 1337).sampled


def test_results_say_how_many_rows_a_sampled_split_covers(tmp_path):
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=40, eval_max_rows=1000, **TINY)
    results = train_and_evaluate(config, name, tmp_path / "run", progress="off")
    ds = dataset_from_config(config)
    assert results["eval_rows"] == {s: 1000 for s in SPLITS}
    assert results["split_rows"] == {s: len(ds.split(s)[0]) for s in SPLITS}
    assert all(n > 1000 for n in results["split_rows"].values())
    # independently: the same rows drawn from numpy's generator, scored by the plain loss
    run = build_run(config, name, tmp_path / "unused")
    state = ckpt.restore_state(tmp_path / "run", 40)
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    step = make_eval_step(run.model)
    for i, s in enumerate(SPLITS):
        X, Y = ds.split(s)
        idx = np.sort(np.random.default_rng([config.split_seed, i]).choice(len(X), 1000, False))
        want = evaluate_loss(step, variables, X[idx], Y[idx], 1000)
        assert results["loss"][s] == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# What an evaluation shows


class Lines(_Display):
    def __init__(self, mode: str = "auto") -> None:
        super().__init__(0, 0, "step", mode)
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)


def test_a_slow_evaluation_forecasts_once_and_shows_its_rows(monkeypatch):
    monkeypatch.setattr(evaluation, "SLOW_SECONDS", 0.0)
    shown = Lines()
    watch = EvalWatch(40, shown, describe="train 10 rows", forecast=True)
    watch.begin(1000)
    for _ in range(10):
        time.sleep(0.001)
        watch.tick(100)
    watch.close()
    assert len(shown.lines) == 1 + 7  # the forecast (at 2 tenths), then a line at 3 to 9
    assert "1,000 rows (train 10 rows)" in shown.lines[0]
    assert "--config.eval_max_rows" in shown.lines[0] and watch.forecast_shown
    assert shown.lines[-1] == "eval step 40: 900/1,000 rows"
    quiet = Lines("off")
    watch = EvalWatch(40, quiet, forecast=False)
    watch.begin(1000)
    for _ in range(10):
        time.sleep(0.001)
        watch.tick(100)
    assert quiet.lines == []  # progress "off", and no forecast asked for


def test_a_fast_evaluation_shows_nothing():
    shown = Lines()
    watch = EvalWatch(40, shown, forecast=True)
    watch.begin(1000)
    for _ in range(10):
        watch.tick(100)
    assert shown.lines == [] and not watch.forecast_shown


# ---------------------------------------------------------------------------------------------
# A signal during an evaluation


def signal_at_evaluation(monkeypatch, step: int, sig=signal.SIGTERM) -> None:
    """Send `sig` to this process at the first batch of the evaluation at `step`."""
    tick = EvalWatch.tick

    def tick_and_signal(self, rows):
        if self.step == step and self.batches == 0:
            os.kill(os.getpid(), sig)
        return tick(self, rows)

    monkeypatch.setattr(EvalWatch, "tick", tick_and_signal)


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.heavy)]
)
def test_a_signal_during_an_evaluation_saves_and_resume_is_exact(tmp_path, monkeypatch, sig):
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=80, eval_batch_size=256, **TINY)
    straight = train_and_evaluate(config, name, tmp_path / "one", progress="off")
    signal_at_evaluation(monkeypatch, 40, sig)
    with pytest.raises(Interrupted) as stop:
        train_and_evaluate(config, name, tmp_path / "int", progress="off")
    assert stop.value.signum == sig
    assert ckpt.make_manager(tmp_path / "int").latest_step() == 40
    logged = rundir.read_metrics(tmp_path / "int")
    assert logged[-1]["step"] == 40 and "split_loss" not in logged[-1]
    monkeypatch.undo()
    resumed = train_and_evaluate(config, name, tmp_path / "int", resume=True, progress="off")
    assert resumed["loss"] == straight["loss"]
    a, b = (ckpt.restore_state(tmp_path / d, 80) for d in ("int", "one"))
    chex.assert_trees_all_equal(a["params"], b["params"])
    chex.assert_trees_all_equal(a["batch_stats"], b["batch_stats"])
    split = lambda d: [(r["step"], r.get("split_loss")) for r in rundir.read_metrics(d)]  # noqa: E731
    assert split(tmp_path / "int") == split(tmp_path / "one")  # step 40's losses completed


@pytest.mark.heavy
def test_a_signal_during_the_last_evaluation_resumes_to_the_same_results(tmp_path, monkeypatch):
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=40, eval_batch_size=256, **TINY)
    straight = train_and_evaluate(config, name, tmp_path / "one", progress="off")
    signal_at_evaluation(monkeypatch, 40)
    with pytest.raises(Interrupted):
        train_and_evaluate(config, name, tmp_path / "int", progress="off")
    assert not (tmp_path / "int" / "results.json").exists()
    monkeypatch.undo()
    resumed = train_and_evaluate(config, name, tmp_path / "int", resume=True, progress="off")
    assert resumed["loss"] == straight["loss"]
    assert rundir.read_metrics(tmp_path / "int")[-1]["split_loss"] == straight["loss"]


@pytest.mark.heavy
def test_a_signal_during_a_sweeps_evaluation_saves_and_resumes_exactly(tmp_path, monkeypatch):
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=80, eval_batch_size=256, **TINY)
    members = sweep.expand_members(config, [("seed", "0:2")])
    straight = sweep.run_sweep(members, name, tmp_path / "one")
    signal_at_evaluation(monkeypatch, 40)
    with pytest.raises(Interrupted):
        sweep.run_sweep(members, name, tmp_path / "int")
    monkeypatch.undo()
    resumed = sweep.run_sweep(members, name, tmp_path / "int", resume=True)
    assert [m["loss"] for m in resumed["members"]] == [m["loss"] for m in straight["members"]]
    for m in straight["members"]:
        a, b = (ckpt.restore_state(tmp_path / d / m["workdir"], 80) for d in ("int", "one"))
        chex.assert_trees_all_equal(a["params"], b["params"])


# ---------------------------------------------------------------------------------------------
# Torn logs


def test_a_torn_last_line_is_dropped_with_one_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n{"step": 20}\n{"step": 3', encoding="utf-8")
    assert rundir.read_jsonl(path) == [{"step": 10}, {"step": 20}]  # readers skip it quietly
    assert capsys.readouterr().err == ""
    rundir.trim_jsonl(path, 20)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torn last line" in err[0] and str(path) in err[0]
    assert path.read_text() == '{"step": 10}\n{"step": 20}\n'
    path.write_text('{"step": 10}\n{"ste\n{"step": 20}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"metrics.jsonl:2: not a JSON line"):
        rundir.read_jsonl(path)


def test_resume_drops_torn_lines_of_metrics_and_diagnostics_and_continues(tmp_path, capsys):
    data = write_small_names(tmp_path)
    config, name = tiny_config(
        "mlp", data, num_steps=40, log_diagnostics=True, diagnostics_every=20, **TINY
    )
    train_and_evaluate(config, name, tmp_path / "run", progress="off")
    for log in (rundir.METRICS_FILE, rundir.DIAGNOSTICS_FILE):
        with open(tmp_path / "run" / log, "a", encoding="utf-8") as f:
            f.write('{"step": 45, "lo')  # as kill -9 during a write leaves it
    capsys.readouterr()
    config.num_steps = 80
    results = train_and_evaluate(config, name, tmp_path / "run", resume=True, progress="off")
    err = capsys.readouterr().err
    assert err.count("torn last line") == 2
    assert results["steps"] == 80
    assert [r["step"] for r in rundir.read_metrics(tmp_path / "run")] == [20, 40, 60, 80]
    assert [r["step"] for r in rundir.read_diagnostics(tmp_path / "run")] == [0, 20, 40, 60]


# ---------------------------------------------------------------------------------------------
# Workdir errors


def test_every_os_error_at_workdir_creation_is_one_user_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for workdir in (Path("/proc/x"), a_file / "run", tmp_path / ("n" * 300), a_file):
        with pytest.raises(UserError, match=f"workdir '{workdir}'"):
            prepare_workdir(workdir, resume=False, overwrite=False)
        with pytest.raises(UserError, match=f"workdir '{workdir}'"):
            WorkdirLock(workdir)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(UserError, match="ro/run"):
            make_dir(locked / "run")


@pytest.mark.heavy
def test_train_on_an_odd_workdir_is_one_line_and_exit_2(tmp_path):
    data = write_small_names(tmp_path, 200)
    for workdir in ("/proc/x", str(tmp_path / ("n" * 300))):
        proc = run_cli(
            "train",
            "--config=bigram",
            f"--workdir={workdir}",
            f"--config.data_path={data}",
            "--config.num_samples=0",
            "--resume",
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith(f"error: workdir '{workdir}'"), lines


# ---------------------------------------------------------------------------------------------
# The workdir lock


def test_a_locked_workdir_is_refused_naming_the_holder_and_free_after_release(tmp_path):
    lock = WorkdirLock(tmp_path / "w")
    with pytest.raises(UserError, match=f"in use by another run \\(pid {os.getpid()}\\)"):
        WorkdirLock(tmp_path / "w")
    data = write_small_names(tmp_path)
    config, name = tiny_config("mlp", data, num_steps=40, **TINY)
    with pytest.raises(UserError, match="in use by another run"):
        sweep.run_sweep(sweep.expand_members(config, [("seed", "0:2")]), name, tmp_path / "w")
    lock.release()
    with WorkdirLock(tmp_path / "w"):
        pass
    train_and_evaluate(config, name, tmp_path / "w", progress="off")  # released at its end
    with WorkdirLock(tmp_path / "w"):
        pass


def _wait_for_lock(workdir: Path, proc: subprocess.Popen) -> int:
    deadline = time.time() + 240
    while time.time() < deadline:
        lock = workdir / rundir.LOCK_FILE
        if lock.is_file() and lock.read_text().strip() and (workdir / "metrics.jsonl").exists():
            return int(lock.read_text())
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.1)
    raise AssertionError("the first train never locked its workdir")


@pytest.mark.heavy
def test_a_second_train_is_refused_and_a_dead_holder_does_not_block(tmp_path):
    data = write_small_names(tmp_path)
    workdir = tmp_path / "w"
    args = [
        "--config=mlp",
        f"--workdir={workdir}",
        f"--config.data_path={data}",
        "--config.num_samples=0",
        "--config.steps_per_call=100",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.Popen(
        [sys.executable, "-m", "jax_makemore.train", *args, "--config.num_steps=10000000"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert _wait_for_lock(workdir, first) == first.pid
        second = run_cli("train", *args, "--config.num_steps=100", "--overwrite")
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"in use by another run (pid {first.pid})" in lines[0]
    finally:
        first.kill()  # SIGKILL: no chance to release anything
        first.wait()
    again = run_cli("train", *args, "--config.num_steps=100", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert json.loads((workdir / "results.json").read_text())["steps"] == 100
