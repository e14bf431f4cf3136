"""A sweep's members summarised per setting of one swept key, with the share of sampled words
that copy a training word: the table of the README's "hidden layer size" experiment.

    python scripts/sweep_report.py runs/sweep_hidden --key model.n_hidden [--num 1000]

For each value of `--key` (mean ± std over the other swept keys, e.g. seeds): train and val
loss, the train-val gap, and the share of `--num` sampled words (seed 0, temperature 1) that are
words of the training split, and that are new.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import jax

from jax_makemore.models import input_length
from jax_makemore.restore import load_trained
from jax_makemore.sample import default_max_len, generate, label_words


def member_row(member_dir: Path, num: int) -> dict[str, float]:
    loaded = load_trained(member_dir)
    results = json.loads((member_dir / "results.json").read_text())
    words = generate(
        loaded.model, loaded.variables, loaded.vocab, jax.random.PRNGKey(0), num,
        layout=loaded.spec.layout, input_len=input_length(loaded.config.model, loaded.seq_len),
        max_len=default_max_len(loaded.seq_len - 1),
    )  # fmt: skip
    labels = label_words(words, loaded.train_words or set(), loaded.heldout_words or set())
    return {
        "train": results["loss"]["train"],
        "val": results["loss"]["val"],
        "gap": results["loss"]["val"] - results["loss"]["train"],
        "copies": labels.count("in train") / num,
        "new": labels.count("new") / num,
    }


def mean_std(values: list[float], digits: int = 4) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--key", required=True, help="the swept key to group by")
    parser.add_argument("--num", type=int, default=1000, help="words sampled per member")
    args = parser.parse_args(argv)
    root = Path(args.sweep_dir)
    record = json.loads((root / "sweep.json").read_text())
    rows: dict[object, list[dict[str, float]]] = defaultdict(list)
    for member in record["members"]:
        if member.get("status") != "done":
            continue
        value = member["overrides"][args.key]
        rows[value].append(member_row(root / member["workdir"], args.num))
    print(f"| {args.key} | members | train | val | val − train | sampled words in train | new |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for value in sorted(rows):
        r = rows[value]

        def col(name: str, digits: int = 4, r=r) -> str:
            return mean_std([m[name] for m in r], digits)

        print(
            f"| {value} | {len(r)} | {col('train')} | {col('val')} | {col('gap')} | "
            f"{col('copies', 3)} | {col('new', 3)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
