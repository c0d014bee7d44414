"""Shared command-line plumbing: one-line errors with exit code 2, never a traceback."""
from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from ddrsa.config import format_validation_error
from ddrsa.errors import DDRSAError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are a single line on stderr (exit 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def run_cli(prog: str, main, argv=None, passthrough: bool = False):
    """Call `main(argv)`; user errors become one line on stderr and exit code 2.

    With `passthrough` the return value of `main` is returned as is (not an exit code).
    """
    try:
        result = main(argv)
        return result if passthrough else (result or 0)
    except ValidationError as exc:
        fail(prog, format_validation_error(exc))
    except DDRSAError as exc:
        fail(prog, str(exc))
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; run the same command again to resume\n")
        return 130
    except OSError as exc:  # unwritable output folder, disk full
        fail(prog, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    return 0
