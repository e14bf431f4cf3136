"""Throughput benchmarks of the project's train step, evaluation and sampling beside PyTorch
references: `python scripts/bench.py --help`, the same as `python -m benchmarks` (the
`benchmarks` package, installed with the project by `pip install -e .`)."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
