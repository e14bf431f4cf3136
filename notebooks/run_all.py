"""Build every notebook of this folder from its jupytext twin (`NN_name.py`, the source of
truth) and execute it with nbclient, in order, in this folder; print each one's wall time and
fail on the first cell that raises.

    python notebooks/run_all.py                 # build + execute all, write the .ipynb
    python notebooks/run_all.py 02_mlp          # only the named ones
    python notebooks/run_all.py --check         # execute into a temporary copy, write nothing

The notebooks train into `notebooks/runs/` (ignored by git) with overwrite=True, so a rerun
starts from scratch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
#: Each notebook's limit; nbclient stops a cell that runs longer than this.
CELL_TIMEOUT_S = 600


def sources(names: list[str]) -> list[Path]:
    """The jupytext twins `NN_name.py` of this folder, in order (all when `names` is empty)."""
    found = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
    if not names:
        return found
    chosen = [p for p in found if p.stem in names or p.name in names]
    missing = set(names) - {p.stem for p in chosen} - {p.name for p in chosen}
    if missing:
        raise SystemExit(f"run_all: no notebook named {sorted(missing)} in {HERE}")
    return chosen


def execute(source: Path, write: bool) -> float:
    """Execute the notebook built from `source` in this folder; write `NN_name.ipynb` with its
    outputs when `write`. Returns the wall time in seconds."""
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if write:
        nbformat.write(nb, source.with_suffix(".ipynb"))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (NN_name), default all")
    parser.add_argument("--check", action="store_true", help="execute only; write no .ipynb")
    args = parser.parse_args(argv)
    total = 0.0
    for source in sources(args.names):
        seconds = execute(source, write=not args.check)
        total += seconds
        print(f"{source.stem}: {seconds:.1f} s", flush=True)
    print(f"all: {total:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
