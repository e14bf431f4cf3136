"""The table on stdout and the README's markdown table from bench JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def num(v: Any, unit: str = "") -> str:
    """The tables' format: thousands separators from 100 on, two decimals below."""
    return "n/a" if v is None else f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"


def makemore_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Table rows of the cached/recompute sampling and the interleaved makemore comparison
    (present only where the JSON has them)."""
    rows = []
    if r.get("sample_recompute_by_batch"):
        rows += [
            (f"sample recompute, batch {b}", num(v, " names/s"))
            for b, v in r["sample_recompute_by_batch"].items()
        ]
    labelled = [
        ("train_chars_per_sec", "train, default step (interleaved)", " chars/s"),
        ("train_padded_chars_per_sec", "train, padded step (interleaved)", " chars/s"),
        ("torch_eager_chars_per_sec", "torch eager (interleaved)", " chars/s"),
        ("torch_compile_chars_per_sec", "torch.compile (interleaved)", " chars/s"),
        ("speedup_train_chars", "speedup chars (JAX / torch eager)", "x"),
        ("speedup_vs_compile_chars", "speedup chars (JAX / torch.compile)", "x"),
        ("sample_cached_vs_recompute", "sample cached / recompute", "x"),
    ]
    rows += [(label, num(r[key], unit)) for key, label, unit in labelled if key in r]
    if r.get("torch_compile_error"):
        rows.append(("torch.compile error", r["torch_compile_error"]))
    return rows


def format_table(r: dict[str, Any]) -> str:
    rows = [
        ("machine", r.get("machine", "")),
        ("load average (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in r.get("load_average", []))),
        ("device", r["device"]),
        ("jax", r["jax_version"]),
        ("compile (train chunk)", num(r["compile_seconds"], " s")),
        ("train, one jit call per step", num(r["train_per_step_steps_per_sec"], " steps/s")),
        ("train, fused (steps_per_call)", num(r["train_fused_steps_per_sec"], " steps/s")),
    ]
    rows += [(f"  fused K={k}", num(v, " steps/s")) for k, v in r["train_fused_by_k"].items()]
    rows += [("eval (val split)", num(r["eval_examples_per_sec"], " examples/s"))]
    rows += [(f"sample, batch {b}", num(v, " names/s")) for b, v in r["sample_by_batch"].items()]
    rows += [
        ("train, characters", num(r.get("train_fused_chars_per_sec"), " chars/s")),
        (
            "achieved / matmul peak",
            f"{num(r.get('achieved_gflops'))} / {num(r.get('peak_matmul_gflops'))} GFLOP/s",
        ),
    ]
    rows += [
        (
            f"variant: {label}",
            num(v["steps_per_sec"], " steps/s") + ", " + num(v["chars_per_sec"], " chars/s"),
        )
        for label, v in r.get("variants", {}).items()
    ]
    rows += [
        ("peak RSS", num(r["peak_rss_mb"], " MB")),
        ("torch eager train", num(r["torch_eager_steps_per_sec"], " steps/s")),
        # makemore.py's batched generate for sequence models, its per-word loop for windows
        ("torch sampling", num(r["torch_sample_names_per_sec"], " names/s")),
        ("speedup train (fused / torch)", num(r["speedup_train"], "x")),
        ("speedup sample (batch / torch)", num(r["speedup_sample"], "x")),
    ]
    rows += makemore_rows(r)
    if "train_fused_by_devices" in r:
        for n, v in r["train_fused_by_devices"]["steps_per_sec"].items():
            rows.append((f"simulated devices={n}", num(v, " steps/s")))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def markdown_table(results: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """One column per bench JSON, one row per figure (the README's benchmark table)."""

    def num(v: Any) -> str:
        return "–" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.2f}"

    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("compile, train chunk (s)", lambda r: r["compile_seconds"]),
        ("train, one jit call per step (steps/s)", lambda r: r["train_per_step_steps_per_sec"]),
    ]
    rows += [
        (f"train, fused, K={k} steps per call (steps/s)", lambda r, k=k: r["train_fused_by_k"][k])
        for k in results[0]["train_fused_by_k"]
    ]
    rows += [("eval, val split (examples/s)", lambda r: r["eval_examples_per_sec"])]
    rows += [
        (f"sample, batch {b} (names/s)", lambda r, b=b: r["sample_by_batch"][b])
        for b in results[0]["sample_by_batch"]
    ]
    rows += [
        (
            f"PyTorch eager train, batch {results[0]['batch_size']} (steps/s)",
            lambda r: r["torch_eager_steps_per_sec"],
        ),
        ("PyTorch sampling (names/s)", lambda r: r["torch_sample_names_per_sec"]),
        ("speedup, fused train / PyTorch", lambda r: r["speedup_train"]),
        ("speedup, batch sampling / PyTorch", lambda r: r["speedup_sample"]),
        ("peak RSS of the bench, JAX part (MB)", lambda r: r["peak_rss_mb"]),
    ]
    with_devices = [r["train_fused_by_devices"] for r in results if "train_fused_by_devices" in r]
    if with_devices:
        rows += [
            (
                f"train, {n} simulated CPU devices (steps/s)",
                lambda r, n=n: r.get("train_fused_by_devices", {}).get("steps_per_sec", {}).get(n),
            )
            for n in with_devices[0]["steps_per_sec"]
        ]
    lines = [
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
        "| device | " + " | ".join(r["device"] for r in results) + " |",
        "| jax | " + " | ".join(r["jax_version"] for r in results) + " |",
    ]
    lines += [
        f"| {name} | " + " | ".join(num(get(r)) for r in results) + " |" for name, get in rows
    ]
    return "\n".join(lines)
