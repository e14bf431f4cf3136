"""The makemore notes, checked: `python scripts/notes_claims.py --help`, the same as
`python -m claims` (the `claims` package, installed with the project by `pip install -e .`)."""

import sys

from claims.cli import main

if __name__ == "__main__":
    sys.exit(main())
