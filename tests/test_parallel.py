"""Data parallelism (jax_makemore/parallel.py): N devices and N processes train like one device.

Every run is a subprocess on CPU with forced host devices (XLA_FLAGS), since the device count of
a process is fixed when JAX starts. All runs share one 1-device reference run of the same config.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO, run_cli, write_small_names

from jax_makemore import checkpoint as ckpt

STEPS = 200
TRAIN_ARGS = (
    "--config", "mlp", "--overwrite",
    f"--config.num_steps={STEPS}", "--config.steps_per_call=20", "--config.num_samples=0",
)  # fmt: skip
TIMEOUT = 120  # seconds per subprocess


def forced_devices(n: int) -> dict[str, str]:
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}


def train(workdir: Path, data: Path, devices: int, *extra: str) -> subprocess.CompletedProcess:
    proc = run_cli(
        "train", *TRAIN_ARGS, "--workdir", str(workdir), f"--config.data_path={data}", *extra,
        env=forced_devices(devices), timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def outcome(workdir: Path) -> tuple[list[float], dict[str, float], dict]:
    """(chunk losses, final split losses, params) of a finished run."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    split_loss = json.loads((workdir / "results.json").read_text())["loss"]
    state = ckpt.restore_state(workdir, STEPS)  # onto this process's one device, whatever saved it
    variables = {k: state[k] for k in ("params", "batch_stats")}
    return [r["loss"] for r in records], split_loss, variables


def assert_same_training(run: Path, reference: Path) -> None:
    losses, split_loss, variables = outcome(run)
    ref_losses, ref_split_loss, ref_variables = outcome(reference)
    # one metrics line per chunk: only process 0 writes
    assert len(losses) == len(ref_losses) == STEPS // 20
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-5)
    for split, value in ref_split_loss.items():
        assert split_loss[split] == pytest.approx(value, abs=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5),
        variables,
        ref_variables,
    )


@pytest.fixture(scope="module")
def names(tmp_path_factory) -> Path:
    return write_small_names(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory, names) -> Path:
    workdir = tmp_path_factory.mktemp("one_device") / "w"
    train(workdir, names, 1)
    return workdir


@pytest.mark.heavy
def test_eight_devices_train_like_one(tmp_path, names, one_device_run):
    workdir = tmp_path / "w"
    train(workdir, names, 8, "--config.num_devices=8")
    assert_same_training(workdir, one_device_run)


def test_batch_size_must_divide_over_devices(tmp_path, names):
    proc = run_cli(
        "train", *TRAIN_ARGS, "--workdir", str(tmp_path / "w"), f"--config.data_path={names}",
        "--config.batch_size=36", env=forced_devices(8), timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: config key batch_size=36 is not divisible by the 8 devices (num_devices=8); "
        "use a multiple of 8"
    )
    assert not (tmp_path / "w").exists()  # rejected before the workdir is touched


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(tmp_path: Path, workdir: Path, names: Path, *extra: str, signal_to=None):
    """Two processes with 2 CPU devices each on 127.0.0.1; with `signal_to=(pid, sig)` that one
    process gets `sig` once process 0 has logged its first chunk. Returns (procs, stdouts)."""
    import time

    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **forced_devices(2)}
    procs = []
    try:
        for pid in range(2):
            cmd = [
                sys.executable, "-m", "jax_makemore.train", *TRAIN_ARGS,
                "--workdir", str(workdir), f"--config.data_path={names}",
                "--coordinator_address", address, "--num_processes", "2", "--process_id", str(pid),
                *extra,
            ]  # fmt: skip
            with open(tmp_path / f"out{pid}", "w") as out, open(tmp_path / f"err{pid}", "w") as err:
                procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err))
        if signal_to is not None:
            deadline = time.time() + TIMEOUT
            metrics = workdir / "metrics.jsonl"
            while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
                assert all(p.poll() is None for p in procs), (tmp_path / "err0").read_text()[-3000:]
                time.sleep(0.1)
            procs[signal_to[0]].send_signal(signal_to[1])
        for p in procs:
            p.wait(timeout=TIMEOUT)
    finally:
        for p in procs:  # on a timeout or failure, never leave a process waiting for its peer
            if p.poll() is None:
                p.kill()
                p.wait()
    return procs, [(tmp_path / f"out{pid}").read_text() for pid in range(2)]


@pytest.mark.heavy
def test_two_processes_train_like_one_device(tmp_path, names, one_device_run):
    """Two processes with 2 CPU devices each (a 4-device mesh) on 127.0.0.1 share the global
    batch of 32 and write one shared workdir; only process 0 logs and writes results."""
    workdir = tmp_path / "w"
    procs, stdout = run_two_processes(tmp_path, workdir, names)
    for pid, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"err{pid}").read_text()[-3000:]
    # (gloo itself prints connection lines on stdout)
    assert "mlp: 200 steps" in stdout[0] and "mlp: 200 steps" not in stdout[1]
    assert_same_training(workdir, one_device_run)


@pytest.mark.heavy
def test_a_signal_to_one_process_stops_both_with_a_checkpoint(tmp_path, names):
    """SIGINT to process 1 only: both processes stop at the same chunk, the checkpoint that
    needs both of them is written, and neither waits forever for the other."""
    import signal

    workdir = tmp_path / "w"
    procs, _ = run_two_processes(
        tmp_path, workdir, names, "--config.num_steps=100000", signal_to=(1, signal.SIGINT)
    )
    assert procs[1].returncode == 130, (tmp_path / "err1").read_text()[-3000:]
    assert procs[0].returncode == 143, (tmp_path / "err0").read_text()[-3000:]
    step = ckpt.make_manager(workdir).latest_step()
    assert step is not None and 0 < step < 100000 and step % 20 == 0
    assert "continue with --resume" in (tmp_path / "err0").read_text()
    state = ckpt.restore_state(workdir, step)
    assert int(state["step"]) == step


@pytest.mark.heavy
def test_diagnostics_on_two_devices_equal_one_device(tmp_path, names):
    """The in-chunk diagnostics (saturation, gradient stats, update ratios) see the global
    batch on a mesh too: two devices report what one device reports."""
    extra = ("--config.log_diagnostics=True", "--config.diagnostics_every=100")
    records = []
    for devices in (1, 2):
        workdir = tmp_path / f"d{devices}"
        train(workdir, names, devices, f"--config.num_devices={devices}", *extra)
        lines = (workdir / "diagnostics.jsonl").read_text().splitlines()
        records.append([json.loads(line) for line in lines])
    one, two = records
    assert [r["step"] for r in one] == [r["step"] for r in two] == [0, 100]
    for a, b in zip(one, two, strict=True):
        assert a["tanh"]["h_BxH"]["saturated"] == pytest.approx(
            b["tanh"]["h_BxH"]["saturated"], abs=1e-6
        )
        assert a["update_ratio"].keys() == b["update_ratio"].keys()
        for name, ratio in a["update_ratio"].items():
            assert ratio == pytest.approx(b["update_ratio"][name], abs=1e-4)
        for name, stats in a["grad"].items():
            assert stats["std"] == pytest.approx(b["grad"][name]["std"], rel=1e-4)
