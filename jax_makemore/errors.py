"""User-facing errors: one line that names the file, key or value, and what to do.

Every command-line entry point runs through `run_cli`, which turns a `UserError` (and a few
well-known OS errors) into `error: <message>` on stderr and a non-zero exit status instead of a
traceback. `--debug` anywhere on the command line shows the traceback too.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A problem with the user's input (file, flag, config key or value), not a bug."""

    exit_code = 2


class DivergedError(UserError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; exit status 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


def run_cli(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` and map user errors to a one-line message and a non-zero exit status
    (2 for bad input, 3 for a diverged run, 130/143 for SIGINT/SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return int(main(argv) or 0)
    except UserError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as err:
        if debug:
            traceback.print_exc()
        where = f" '{err.filename}'" if getattr(err, "filename", None) else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
