"""`python -m claims ...`: the notes-claims command (claims.cli.main)."""

import sys

from claims.cli import main

sys.exit(main())
