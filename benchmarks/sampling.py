"""Sampling throughput: the cached default, the recompute path and makemore.py's generate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.machine import Sizes, interleave
from benchmarks.report import num
from jax_makemore.models import input_length
from jax_makemore.restore import default_max_len
from jax_makemore.sample import generate

SAMPLE_BATCHES = (1, 100, 10_000)


def sampling_runs(
    trained: tuple, batch: int, calls: int, recompute: bool
) -> tuple[Callable[[], float], Callable[[], float] | None]:
    """(cached default, recompute path or None) for `calls` batches of `batch` words through
    `generate` (decoding to strings included; the spec lets a decoding model use its cache);
    each returns the names it drew."""
    config, ds, spec, model, variables, key = trained
    kw = dict(
        layout=spec.layout, spec=spec, input_len=input_length(config.model, ds.seq_len),
        max_len=default_max_len(ds.longest_word), batch_size=batch,
    )  # fmt: skip

    def run(**extra: Any) -> float:
        words = generate(
            model=model, variables=variables, vocab=ds.vocab, key=key, num=calls * batch,
            **kw, **extra,
        )  # fmt: skip
        return len(words)

    return run, (lambda: run(recompute=True)) if recompute else None


def bench_sampling(
    trained: tuple, sizes: Sizes, log: Callable[[str], None], torch_sample: Callable | None
) -> dict[str, Any]:
    """Names/s at batches 1, 100 and 10,000 from the cached default and (sequence models) the
    recompute path, interleaved; at the largest batch `torch_sample` (makemore.py's generate,
    sequence models) joins the rounds."""
    layout = trained[2].layout
    recompute = layout == "sequences"
    cached, slow = {}, {}
    torch_rate = None
    for batch in SAMPLE_BATCHES:
        run, run_slow = sampling_runs(trained, batch, 1, recompute)
        t0 = time.perf_counter()
        run()  # compile + warm-up of one batch (the compiled sampler is cached)
        if run_slow:
            run_slow()
        one = time.perf_counter() - t0
        # about half a second of work per run and round, within the size's word budget
        calls = int(min(max(1, 0.5 // max(one, 1e-3)), max(1, sizes.sample_words[batch] // batch)))
        run, run_slow = sampling_runs(trained, batch, calls, recompute)
        runs = {"cached": run} | ({"recompute": run_slow} if run_slow else {})
        if torch_sample is not None and batch == max(SAMPLE_BATCHES):
            runs["torch"] = torch_sample
        rates = interleave(runs, sizes.sample_repeats if one > 1.0 else sizes.repeats)
        cached[str(batch)] = rates["cached"]["rate"]
        slow[str(batch)] = rates["recompute"]["rate"] if run_slow else None
        torch_rate = rates["torch"]["rate"] if "torch" in rates else torch_rate
        log(f"sample batch {batch}: {num(cached[str(batch)])} names/s cached, "
            f"{num(slow[str(batch)])} recompute")  # fmt: skip
    top = str(max(SAMPLE_BATCHES))
    out: dict[str, Any] = {
        "sample_names_per_sec": cached[top],
        "sample_by_batch": cached,
        "sample_recompute_names_per_sec": slow[top],
        "sample_recompute_by_batch": slow if recompute else None,
        "sample_cached_vs_recompute": cached[top] / slow[top] if slow[top] else None,
    }
    if not recompute:
        out["sample_recompute_note"] = (
            "windows layout: no cache, its sampler reads the whole window (the default)"
        )
    if torch_sample is not None:
        out["torch_sample_names_per_sec"] = torch_rate
    return out
