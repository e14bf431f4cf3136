"""Throughput benchmarks: the jit train step, fused steps, evaluation and sampling, beside a
PyTorch eager reference (`python scripts/bench.py` or `python -m benchmarks`).

    python scripts/bench.py [--config NAME|PATH] [--out FILE.json] [--quick] [--devices 1,2,4,8]
                            [--config.KEY=VALUE ...]
    python scripts/bench.py --markdown [LABEL=]FILE.json ...   # the README table from results

Every figure is the median of several timed repeats after a warm-up call, with
`block_until_ready` (or a host transfer) closing each timed region. Everything JAX runs is the
project's own code: `create_train_state`, `make_train_step`, `make_train_chunk`,
`make_eval_step` + `evaluate_loss`, and `make_sampler` + `generate` (the cached default and,
for sequence models, `recompute=True`). The PyTorch references (the `[bench]` extra): for
`transformer` and `gru`, makemore.py's model and training step in eager PyTorch and under
`torch.compile`, timed interleaved with the packed and padded JAX steps in characters/s, and
makemore.py's `generate` (bench_vs_torch); for the MLP, a plain eager makemore MLP of the same
shapes trained with SGD at the same batch size and makemore's per-word `torch.multinomial`
sampling loop on the same weights. `profile` says where the default step's time goes
(jax.profiler trace, by part of the model); `machine` and `load_average` say where and under
what load it was measured.

One module per concern: `machine` (where and under what load, the timer), `jax_timings`,
`sampling`, `vs_torch` and `torch_mlp` with the PyTorch models `torch_transformer`,
`torch_gru`, `torch_wavenet`, `hlo_profile`, `devices` (subprocesses), `sweep_bench`,
`report` (the tables) and `cli`.

Prints a table on stdout and, with `--out`, writes one JSON object. `--devices` adds
`train_fused_by_devices`: fused steps/s of the train command with N forced XLA host devices on
this one CPU (a simulation of data parallelism, not N real accelerators).
"""

from __future__ import annotations
