"""Mini-batches: batch sizes at equal steps and at equal examples seen, and how often an
example is seen."""

from __future__ import annotations

import statistics
from typing import Any

from claims.context import block_sweep
from claims.runner import Runner, dataset, members
from claims.verdict import claim, difference_part, figure_part, fmt


def minibatch_runs(run: Runner) -> dict[str, dict[str, list[float]]]:
    """{regime/batch: {'train': [...], 'val': [...], 'steps': n}} for batches 8, 32, 256 and the
    full split at equal steps (short: every batch, long: the MLP recipe's steps for 8/32/256)
    and at equal examples seen (the recipe's steps x 32). Batch 32 at the recipe's steps is
    the block-size sweep's block_size=3 (the same runs)."""
    b = run.budget
    n_train = len(dataset(run.data, 3).split("train")[0])
    examples = b.mlp_steps * 32
    full_steps = max(1, round(examples / n_train))
    base = members(block_sweep(run), model__block_size=3)
    short = run.sweep("batch_steps", "mlp", {"batch_size": "8,32,256"}, run.loop(b.equal_steps))
    short_full = run.sweep(
        "batch_steps_full", "mlp", {}, run.loop(b.equal_steps) | {"full_batch": "True"}
    )
    long = run.sweep("batch_steps_long", "mlp", {"batch_size": "8,256"}, run.loop(b.mlp_steps))
    ex8 = run.sweep("batch_examples_8", "mlp", {}, run.loop(4 * b.mlp_steps) | {"batch_size": "8"})
    ex256 = run.sweep("batch_examples_256", "mlp", {},
                      run.loop(b.mlp_steps // 8) | {"batch_size": "256"})  # fmt: skip
    exfull = run.sweep(
        "batch_examples_full", "mlp", {}, run.loop(full_steps) | {"full_batch": "True"}
    )
    sources = {
        ("short", "8"): (members(short, batch_size=8), b.equal_steps),
        ("short", "32"): (members(short, batch_size=32), b.equal_steps),
        ("short", "256"): (members(short, batch_size=256), b.equal_steps),
        ("short", "full"): (members(short_full), b.equal_steps),
        ("long", "8"): (members(long, batch_size=8), b.mlp_steps),
        ("long", "32"): (base, b.mlp_steps),
        ("long", "256"): (members(long, batch_size=256), b.mlp_steps),
        ("examples", "8"): (members(ex8), 4 * b.mlp_steps),
        ("examples", "32"): (base, b.mlp_steps),
        ("examples", "256"): (members(ex256), b.mlp_steps // 8),
        ("examples", "full"): (members(exfull), full_steps),
    }
    out = {f"{regime}/{batch}": {"train": [m["loss"]["train"] for m in found],
                                  "val": [m["loss"]["val"] for m in found], "steps": steps}
           for (regime, batch), (found, steps) in sources.items()}  # fmt: skip
    commands = [r["command"] for r in (short, short_full, long, ex8, ex256, exfull)]
    return {"runs": out, "commands": commands, "n_train": n_train, "examples": examples}


def claim_minibatch(run: Runner) -> dict[str, Any]:
    """Batch sizes at equal steps and at equal examples seen."""
    mb = minibatch_runs(run)
    r = mb["runs"]

    def gap(key: str) -> list[float]:
        return [v - t for t, v in zip(r[key]["train"], r[key]["val"], strict=True)]

    table = [["regime", "batch", "steps", "train", "val", "val − train"]]
    names = {"short": "equal steps (short)", "long": "equal steps", "examples": "equal examples"}
    for key, row in r.items():
        regime, batch = key.split("/")
        table.append([names[regime], batch, f"{row['steps']:,}", fmt(row["train"]), fmt(row["val"]),
                      fmt(gap(key))])  # fmt: skip
    parts = [
        difference_part("converges faster: at equal examples seen, batch 32 reaches a lower val "
                        "than the full split", r["examples/32"]["val"], r["examples/full"]["val"], -1),
        difference_part("… and than batch 256", r["examples/32"]["val"], r["examples/256"]["val"], -1),
        difference_part("noise regularises: at equal steps, batch 32's train–val gap is smaller "
                        "than batch 256's", gap("long/32"), gap("long/256"), -1),
    ]  # fmt: skip
    per_step = statistics.mean(r["short/full"]["val"]) - statistics.mean(r["short/32"]["val"])
    why = (
        f"at {mb['examples']:,} examples seen batch 32 reaches val {fmt(r['examples/32']['val'])}, "
        f"the full split ({r['examples/full']['steps']} full-batch steps) {fmt(r['examples/full']['val'])}; "
        f"per step the full split is {per_step:+.3f} from batch 32 after "
        f"{r['short/full']['steps']} steps; at equal steps batch 32's gap is "
        f"{fmt(gap('long/32'))} against 256's {fmt(gap('long/256'))}"
    )
    return claim(
        "minibatch", "Mini-batches",
        "Noise is your friend — randomness acts as a natural regularizer … Converges faster in "
        "practice",
        mb["commands"] + [block_sweep(run)["command"] + "   (batch 32: the block_size=3 members)"],
        mb, table, parts, why,
    ) | {"key_figure": f"equal examples: val b32 {fmt(r['examples/32']['val'])} vs full "
                       f"{fmt(r['examples/full']['val'])}"}  # fmt: skip


def claim_examples_seen(run: Runner) -> dict[str, Any]:
    """How often 100k steps of 32 see each example, on the whole file and the training split."""
    whole = len(dataset(run.data, 3, "(1.0,0.0,0.0)").split("train")[0])
    train = len(dataset(run.data, 3).split("train")[0])
    seen = 100_000 * 32
    parts = [
        figure_part("each example is seen ~14 times (whole file)", seen / whole, 14, 0.5),
        figure_part("… (the training split the model actually trains on)", seen / train, 14, 0.5),
    ]
    table = [["examples", "windows", "3.2M / windows"],
             ["whole file", f"{whole:,}", fmt(seen / whole, 1)],
             ["training split (80% of the words)", f"{train:,}", fmt(seen / train, 1)]]  # fmt: skip
    why = (
        f"3.2M / {whole:,} = {seen / whole:.1f} on the whole file, but training only sees the "
        f"training split: {seen / train:.1f} times per example"
    )
    return claim(
        "examples_seen",
        "Examples seen",
        "after 100k steps with batch_size=32 → 3.2 million examples processed → each example "
        "seen ~14 times on average",
        ["in-process: context windows of the whole file and of the training split"],
        {"whole_file_windows": whole, "train_windows": train},
        table,
        parts,
        why,
    ) | {"key_figure": f"{seen / whole:.1f} (whole file), {seen / train:.1f} (training split)"}
