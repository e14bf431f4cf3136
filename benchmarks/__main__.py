"""`python -m benchmarks ...`: the benchmark command (benchmarks.cli.main)."""

import sys

from benchmarks.cli import main

sys.exit(main(sys.argv[1:]))
