"""scripts/bench.py --quick on a tiny config: the JSON has every key, with the right types, and
the figures derived from others agree with them (characters/s = steps/s x characters per step,
GFLOP/s = FLOPs per step x steps/s, the tables print the JSON's numbers). Timings are reported,
never compared with each other or with a threshold. Marked `slow` (it runs every benchmark, the PyTorch
reference and a 2-device subprocess): `.ci/run` runs it after the README's test command."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from jax_makemore.config import resolve
from jax_makemore.data import dataset_from_config

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
COMMON_KEYS = (
    "train_fused_by_k",
    "sample_by_batch",
    "sample_recompute_names_per_sec",
    "sample_recompute_by_batch",
    "sample_cached_vs_recompute",
    "device",
    "machine",
    "load_average",
    "load_average_end",
    "jax_version",
    "cpu_count",
    "batch_size",
    "layout",
    "eval_characters",
    "profile",
)
#: The keys of the interleaved comparison with makemore.py in PyTorch (transformer, gru).
MAKEMORE_KEYS = (
    "train_chars_per_sec",
    "train_padded_chars_per_sec",
    "torch_eager_chars_per_sec",
    "torch_compile_chars_per_sec",
    "speedup_train_chars",
    "speedup_vs_compile_chars",
    "torch_compile_error",
    "torch_compile_seconds",
    "torch_compile_steps_per_sec",
    "torch_threads",
    "torch_thread_trial_steps_per_sec",
    "torch_sample_batch",
    "train_interleaved_steps_per_call",
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
    config, _ = resolve(
        "mlp",
        [("data_path", str(small_names)), ("model.n_hidden", "16"), ("steps_per_call", "100")],
    )
    ds = dataset_from_config(config)

    assert set(r) == {
        *FLOAT_KEYS,
        *TORCH_KEYS,
        *COMMON_KEYS,
        "train_fused_by_devices",
        "variants",
        "sample_recompute_note",
    }
    for key in FLOAT_KEYS:
        assert isinstance(r[key], float) and r[key] > 0, key
    assert set(r["train_fused_by_k"]) == {"1", "10", "100", "1000"}
    assert set(r["sample_by_batch"]) == {"1", "100", "10000"}
    for v in [*r["train_fused_by_k"].values(), *r["sample_by_batch"].values()]:
        assert isinstance(v, float) and v > 0
    assert r["train_fused_steps_per_sec"] == r["train_fused_by_k"]["100"]  # steps_per_call
    assert r["sample_names_per_sec"] == r["sample_by_batch"]["10000"]
    # a window model has no cache: its one sampler is the default, no recompute figures
    assert r["sample_recompute_by_batch"] is None and r["sample_recompute_names_per_sec"] is None
    assert r["sample_cached_vs_recompute"] is None and "windows" in r["sample_recompute_note"]
    assert r["batch_size"] == 32 and r["layout"] == "windows"
    check_machine_and_profile(r)
    # windows: one character per row of a batch of 32, for the config and each variant
    assert r["train_fused_chars_per_sec"] == pytest.approx(32 * r["train_chunk_steps_per_sec"])
    assert set(r["variants"]) == {
        "mlp, fused BatchNorm backward",
        "mlp_manual (hand-written backward)",
    }
    for label, variant in r["variants"].items():
        assert variant["steps_per_sec"] > 0, label
        assert variant["chars_per_sec"] == pytest.approx(32 * variant["steps_per_sec"]), label
    assert r["achieved_gflops"] == pytest.approx(
        r["flops_per_step"] * r["train_chunk_steps_per_sec"] / 1e9
    )
    # XLA's FLOPs of one step against the two matmuls' forward FLOPs: the forward and the
    # weight gradients at least (2x); with the input gradient (3x) and the elementwise work
    # (BatchNorm, tanh, softmax, SGD on about 1,300 parameters) well under 6x
    m = config.model
    forward = 2 * 32 * (m.block_size * m.n_embd * m.n_hidden + m.n_hidden * ds.vocab.size)
    assert 2 * forward <= r["flops_per_step"] <= 6 * forward, (r["flops_per_step"], forward)
    # the evaluation counts the val split's targets (one per window)
    assert r["eval_characters"] == len(ds.split("val")[1]) > 0
    assert isinstance(r["device"], str) and r["device"]
    assert isinstance(r["jax_version"], str) and isinstance(r["cpu_count"], int)
    # the PyTorch reference is optional: all four numbers, or all four null and a reason
    torch_values = [r[k] for k in TORCH_KEYS]
    if torch_values[0] is None:
        assert all(v is None for v in torch_values)
        assert "PyTorch reference skipped" in proc.stderr
    else:
        assert all(isinstance(v, float) and v > 0 for v in torch_values)
        assert r["speedup_train"] == pytest.approx(
            r["train_fused_steps_per_sec"] / r["torch_eager_steps_per_sec"]
        )
        assert r["speedup_sample"] == pytest.approx(
            r["sample_names_per_sec"] / r["torch_sample_names_per_sec"]
        )
    devices = r["train_fused_by_devices"]
    assert "simulation" in devices["note"]
    assert set(devices["steps_per_sec"]) == {"2"}
    assert isinstance(devices["steps_per_sec"]["2"], float)
    # the table on stdout prints the JSON's numbers beside their names
    rows = (re.fullmatch(r"\s*(.*?)\s{2,}(.*)", line) for line in proc.stdout.splitlines())
    table = {row[1]: row[2] for row in rows if row}
    assert table["fused K=1000"] == f"{number(r['train_fused_by_k']['1000'])} steps/s"
    assert table["sample, batch 10000"] == f"{number(r['sample_by_batch']['10000'])} names/s"
    assert table["simulated devices=2"] == f"{number(devices['steps_per_sec']['2'])} steps/s"
    assert table["train, characters"] == f"{number(r['train_fused_chars_per_sec'])} chars/s"

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
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[1][:-2] for line in lines[2:]}
    assert cells["sample, batch 10000 (names/s)"] == number(r["sample_by_batch"]["10000"])
    assert cells["train, 2 simulated CPU devices (steps/s)"] == number(
        devices["steps_per_sec"]["2"]
    )
    assert cells["compile, train chunk (s)"] == number(r["compile_seconds"])
    assert cells["train, fused, K=100 steps per call (steps/s)"] == number(
        r["train_fused_steps_per_sec"]
    )


def check_machine_and_profile(r: dict) -> None:
    """The machine and load are named, and the profile's parts account for all its op time."""
    assert isinstance(r["machine"], str) and r["machine"]
    for key in ("load_average", "load_average_end"):
        assert len(r[key]) == 3 and all(isinstance(x, float) and x >= 0 for x in r[key])
    profile = r["profile"]
    assert profile["steps"] == 20 and profile["wall_ms_per_step"] > 0
    parts = profile["parts"]
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1.0)
    assert sum(p["ms_per_step"] for p in parts.values()) == pytest.approx(profile["op_ms_per_step"])
    assert 0 < profile["backward_share"] < 1
    assert "optimizer (AdamW)" in parts or "optimizer" in " ".join(parts)


def check_sequence_sampling(r: dict) -> None:
    """A sequence model's recompute path beside the cached default at every batch, and the
    ratios against it and makemore.py's generate."""
    assert set(r["sample_recompute_by_batch"]) == {"1", "100", "10000"}
    assert all(isinstance(v, float) and v > 0 for v in r["sample_recompute_by_batch"].values())
    assert r["sample_recompute_names_per_sec"] == r["sample_recompute_by_batch"]["10000"]
    assert r["sample_cached_vs_recompute"] == pytest.approx(
        r["sample_names_per_sec"] / r["sample_recompute_names_per_sec"]
    )
    assert r["speedup_sample"] == pytest.approx(
        r["sample_names_per_sec"] / r["torch_sample_names_per_sec"]
    )


def test_quick_bench_gru_against_makemore_torch(small_names, tmp_path):
    """--config gru: the packed and padded JAX steps and makemore.py's GRU in PyTorch (eager,
    torch.compile) in characters/s with their ratios; the cached and recompute samplers and
    makemore's generate with theirs; the packed step's rows in the profile."""
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench.py"),
            "--config",
            "gru",
            "--quick",
            "--out",
            str(out),
            f"--config.data_path={small_names}",
            "--config.model.n_embd=16",
            "--config.model.n_embd2=16",
            "--config.steps_per_call=100",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r) == {*FLOAT_KEYS, *TORCH_KEYS, *COMMON_KEYS, *MAKEMORE_KEYS, "variants"}
    assert r["layout"] == "sequences"
    check_machine_and_profile(r)
    assert r["profile"]["packing"]["width"] == 16  # gru packs rows of 16
    assert "recurrent cell" in r["profile"]["parts"]
    for key in ("train_chars_per_sec", "train_padded_chars_per_sec", "torch_eager_chars_per_sec"):
        assert isinstance(r[key], float) and r[key] > 0, key
    assert r["speedup_train_chars"] == pytest.approx(
        r["train_chars_per_sec"] / r["torch_eager_chars_per_sec"]
    )
    if r["torch_compile_chars_per_sec"] is None:  # a failed compile says why
        assert r["speedup_vs_compile_chars"] is None and r["torch_compile_error"]
    else:
        assert r["torch_compile_error"] is None
        assert r["speedup_vs_compile_chars"] == pytest.approx(
            r["train_chars_per_sec"] / r["torch_compile_chars_per_sec"]
        )
    # makemore's padded rows of 32 words: characters per step between 32 x 2 and 32 x L
    chars_per_step = r["torch_eager_chars_per_sec"] / r["torch_eager_steps_per_sec"]
    assert 32 * 2 <= chars_per_step <= 32 * 16, chars_per_step
    assert r["torch_threads"] in (1, r["cpu_count"]) and r["torch_sample_batch"] == 200
    assert r["speedup_train"] == pytest.approx(
        r["train_fused_steps_per_sec"] / r["torch_eager_steps_per_sec"]
    )
    check_sequence_sampling(r)
    rows = (re.fullmatch(r"\s*(.*?)\s{2,}(.*)", line) for line in proc.stdout.splitlines())
    table = {row[1]: row[2] for row in rows if row}
    assert table["torch eager (interleaved)"] == f"{number(r['torch_eager_chars_per_sec'])} chars/s"
    assert table["speedup chars (JAX / torch eager)"] == f"{number(r['speedup_train_chars'])}x"


def number(v: float) -> str:
    """The tables' format: thousands separators from 100 on, two decimals below."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def test_the_shim_and_the_package_entry_point_print_the_same_table():
    """`python scripts/bench.py` is a shim over the `benchmarks` package: both commands give
    the README table of a committed bench JSON, one row per figure."""
    out = REPO / "docs" / "experiments" / "bench" / "cpu-2core-dev-mlp.json"
    r = json.loads(out.read_text())

    def table(*command: str) -> str:
        proc = subprocess.run(
            [sys.executable, *command, "--markdown", f"mlp={out}"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    shim = table(str(REPO / "scripts" / "bench.py"))
    assert shim == table("-m", "benchmarks")
    assert f"| device | {r['device']} |" in shim.splitlines()
    assert f"| compile, train chunk (s) | {number(r['compile_seconds'])} |" in shim.splitlines()
