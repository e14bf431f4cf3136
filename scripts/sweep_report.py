"""A sweep's members summarised per setting of one swept key, with the share of sampled words
that copy a training word: the table of the README's "hidden layer size" experiment.

    python scripts/sweep_report.py runs/sweep_hidden --key model.n_hidden [--num 1000]
    python scripts/sweep_report.py runs/sweep_x --curves
    python scripts/sweep_report.py runs/seed0 runs/seed1 runs/seed2   # separate `train` runs

Each directory is a sweep (its finished members) or one run directory, as `evaluate
--ensemble` reads them. For each value of `--key` (a dotted config key, read from each
member's own config; mean ± std over the other members, e.g. seeds; without `--key`, one row
over every member): train and val loss, the train-val gap, and the share of `--num`
sampled words (seed 0, temperature 1) that are words of the training split, of the held-out
(val and test) splits, and new; and the seen-word preference: how much likelier a sampled word
is to be one given training word than one given held-out word (the in-train share per training
word over the held-out share per held-out word). The split is a seeded shuffle of distinct words,
so a model that learned only what names look like, and none of them by heart, would read about 1;
the excess over 1 is memorisation. The last three columns are the same shares without sampling
noise: the probability mass the model puts on the training words and on the held-out words
(`evaluate --mass`), and their preference.
Members that kept a moving average of their params (config key `ema_decay`) report the
averaged params' losses too, and sample from them. `--curves` prints every member's val loss
at each evaluation instead (raw / averaged), from its metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections

from jax_makemore.config import get_value
from jax_makemore.errors import UserError, run_cli
from jax_makemore.evaluate import ensemble_dirs, seen_word_preference, split_masses
from jax_makemore.logs import read_jsonl
from jax_makemore.restore import load_trained
from jax_makemore.sample import label_words, sample_words


def config_value(config: ml_collections.ConfigDict, dotted_key: str) -> object:
    """The value at `dotted_key` ("model.dropout") of a run's config; a missing key is an error
    naming it."""
    try:
        return get_value(config, dotted_key)
    except (KeyError, AttributeError) as err:
        raise UserError(f"--key: the runs' configs have no key '{dotted_key}'") from err


def member_row(member_dir: Path, num: int, key: str | None = None) -> tuple[object, dict]:
    """(the member's value at `key`, or "all"; its losses and sampled-word shares)."""
    loaded = load_trained(member_dir)
    results = json.loads((member_dir / "results.json").read_text())
    words = sample_words(loaded, jax.random.PRNGKey(0), num)
    train_words, heldout_words = loaded.train_words or set(), loaded.heldout_words or set()
    labels = label_words(words, train_words, heldout_words)
    copies, heldout = labels.count("in train") / num, labels.count("in val/test") / num
    row = {
        "train": results["loss"]["train"],
        "val": results["loss"]["val"],
        "test": results["loss"]["test"],
        "gap": results["loss"]["val"] - results["loss"]["train"],
        "copies": copies,
        "heldout": heldout,
        "new": labels.count("new") / num,
        "preference": seen_word_preference(copies, heldout, len(train_words), len(heldout_words)),
    }
    masses = split_masses(loaded)
    row.update(
        mass_train=masses["train"]["mass"],
        mass_heldout=masses["heldout"]["mass"],
        mass_preference=masses["preference"],
    )
    if results.get("loss_ema"):
        row.update({f"{s}_ema": results["loss_ema"][s] for s in ("train", "val", "test")})
    return (config_value(loaded.config, key) if key else "all"), row


def print_curves(members: list[Path]) -> None:
    """Each member's val at every evaluation: raw, and averaged when the member kept an average."""
    print("| member | step | val | val (averaged params) |")
    print("|---|---:|---:|---:|")
    for member in members:
        for line in read_jsonl(member / "metrics.jsonl"):
            if "split_loss" in line:
                ema = (line.get("split_loss_ema") or {}).get("val")
                ema_text = "—" if ema is None else f"{ema:.4f}"
                print(
                    f"| {member.name} | {line['step']} | {line['split_loss']['val']:.4f} | {ema_text} |"
                )


def mean_std(values: list[float], digits: int = 4) -> str:
    """The "mean ± std" of the values ("inf" or "nan" alone when one of them is not finite)."""
    if not all(math.isfinite(v) for v in values):
        return f"{statistics.mean(values):.{digits}f}"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="sweep directories and/or run directories")
    parser.add_argument(
        "--key", default=None, help="a dotted config key to group by (default: none)"
    )
    parser.add_argument("--num", type=int, default=1000, help="words sampled per member")
    parser.add_argument("--curves", action="store_true", help="val at every evaluation instead")
    args = parser.parse_args(argv)
    members = ensemble_dirs(args.dirs)
    if args.curves:
        print_curves(members)
        return 0
    rows: dict[object, list[dict[str, float]]] = defaultdict(list)
    for member in members:
        value, row = member_row(member, args.num, args.key)
        rows[value].append(row)
    averaged = all("val_ema" in m for r in rows.values() for m in r)
    extra = " val (averaged) | test (averaged) |" if averaged else ""
    print(
        f"| {args.key or 'members'} | n | train | val | test | val − train |{extra} sampled words in train | held out | new |"
        " seen-word preference | mass on train | mass held out | exact preference |"
    )
    print("|---:|---:|---:|---:|---:|---:|" + "---:|" * (9 if averaged else 7))
    for value in sorted(rows, key=str):
        r = rows[value]

        def col(name: str, digits: int = 4, r=r) -> str:
            return mean_std([m[name] for m in r], digits)

        ema = f" {col('val_ema')} | {col('test_ema')} |" if averaged else ""
        print(
            f"| {value} | {len(r)} | {col('train')} | {col('val')} | {col('test')} | {col('gap')} |"
            f"{ema} {col('copies', 3)} | {col('heldout', 3)} | {col('new', 3)} |"
            f" {col('preference', 2)} | {col('mass_train', 3)} | {col('mass_heldout', 3)} |"
            f" {col('mass_preference', 2)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
