"""scripts/bench.py --quick on a tiny config: the JSON has every key, with the right types.
Timings are reported, never asserted. Marked `slow` (it runs every benchmark, the PyTorch
reference and a 2-device subprocess): `.ci/run` runs it after the README's test command."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

FLOAT_KEYS = (
    "compile_seconds",
    "train_per_step_steps_per_sec",
    "train_fused_steps_per_sec",
    "eval_examples_per_sec",
    "sample_names_per_sec",
    "peak_rss_mb",
    "train_fused_chars_per_sec",
    "train_chunk_steps_per_sec",
    "peak_matmul_gflops",
    "achieved_gflops",
    "flops_per_step",
)
TORCH_KEYS = (
    "torch_eager_steps_per_sec",
    "torch_sample_names_per_sec",
    "speedup_train",
    "speedup_sample",
)


def test_quick_bench_writes_every_key(small_names, tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench.py"),
            "--config",
            "mlp",
            "--quick",
            "--out",
            str(out),
            "--devices",
            "2",
            f"--config.data_path={small_names}",
            "--config.model.n_hidden=16",
            "--config.steps_per_call=100",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())

    assert set(r) == {
        *FLOAT_KEYS,
        *TORCH_KEYS,
        "train_fused_by_k",
        "sample_by_batch",
        "device",
        "jax_version",
        "cpu_count",
        "train_fused_by_devices",
        "batch_size",
        "layout",
        "variants",
        "eval_characters",
    }
    for key in FLOAT_KEYS:
        assert isinstance(r[key], float) and r[key] > 0, key
    assert set(r["train_fused_by_k"]) == {"1", "10", "100", "1000"}
    assert set(r["sample_by_batch"]) == {"1", "100", "10000"}
    for v in [*r["train_fused_by_k"].values(), *r["sample_by_batch"].values()]:
        assert isinstance(v, float) and v > 0
    assert r["train_fused_steps_per_sec"] == r["train_fused_by_k"]["100"]  # steps_per_call
    assert r["sample_names_per_sec"] == r["sample_by_batch"]["10000"]
    assert r["batch_size"] == 32 and r["layout"] == "windows"
    fused = r["variants"]["mlp, fused BatchNorm backward"]
    assert fused["steps_per_sec"] > 0 and fused["flops_per_step"] > 0
    # windows: one character per row of a batch of 32
    assert fused["chars_per_sec"] == pytest.approx(32 * fused["steps_per_sec"])
    assert isinstance(r["device"], str) and r["device"]
    assert isinstance(r["jax_version"], str) and isinstance(r["cpu_count"], int)
    # the PyTorch reference is optional: all four numbers, or all four null and a reason
    torch_values = [r[k] for k in TORCH_KEYS]
    if torch_values[0] is None:
        assert all(v is None for v in torch_values)
        assert "PyTorch reference skipped" in proc.stderr
    else:
        assert all(isinstance(v, float) and v > 0 for v in torch_values)
    devices = r["train_fused_by_devices"]
    assert "simulation" in devices["note"]
    assert set(devices["steps_per_sec"]) == {"2"}
    assert isinstance(devices["steps_per_sec"]["2"], float)
    # the table on stdout names every measurement
    for label in ("fused K=1000", "sample, batch 10000", "torch eager train", "devices=2"):
        assert label in proc.stdout

    # --markdown renders the README table from the JSON
    md = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--markdown", f"tiny={out}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert md.returncode == 0, md.stderr[-2000:]
    lines = md.stdout.splitlines()
    assert lines[0] == "| | tiny |" and lines[1] == "|---|---:|"
    assert any(line.startswith("| sample, batch 10000 (names/s) |") for line in lines)
    assert any(line.startswith("| train, 2 simulated CPU devices (steps/s) |") for line in lines)
