"""Print the README's results table from the results.json files that training wrote.

python scripts/results_table.py runs/bigram_counts runs/bigram runs/mlp_nobn runs/mlp
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def main(workdirs: list[str]) -> None:
    print("| config | model | params | steps | train | val | test | wall s | steps/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for workdir in workdirs:
        r = json.loads((Path(workdir) / "results.json").read_text())
        loss = r["loss"]
        print(
            f"| `{r['config']}` | {r['model']} | {r['num_params']:,} | {r['steps']:,} | {fmt(loss['train'])} | "
            f"{fmt(loss['val'])} | {fmt(loss['test'])} | {r['wall_seconds']:.1f} | {r['steps_per_sec']:,.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
