"""`python -m ddrsa.data check FILE [--unit-column C] [--time-column C] [--event-column C] [--time-step 15h]`

Prints what a sweep would use of a fleet table (docs/DATA.md); bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import sys

from ddrsa.cli import OneLineParser, run_cli
from ddrsa.config import TABLE_SUFFIXES, is_table_path
from ddrsa.errors import DataError

PROG = "python -m ddrsa.data"


def add_column_arguments(p) -> None:
    """The table-reading flags (shared with `python -m ddrsa.score`); unset = the YAML next to the
    file, else the defaults unit/time/event."""
    p.add_argument("--unit-column", help="unit id column (default: unit)")
    p.add_argument("--time-column", help="time column: integer steps or timestamps (default: time)")
    p.add_argument("--event-column", help="failure flag column, 1 on the failure step (default: event)")
    p.add_argument("--time-step", help="step size for timestamps, e.g. 15h or 1D")
    p.add_argument("--max-categories", type=int, help="one-hot limit of a categorical covariate (default 20)")


def column_flags(args) -> dict:
    return {k: getattr(args, k) for k in ("unit_column", "time_column", "event_column", "time_step", "max_categories")}


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description="Fleet tables (docs/DATA.md).")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a fleet table and print what a sweep would use")
    check.add_argument("file", help="the table (.csv, .csv.gz, .parquet)")
    add_column_arguments(check)
    args = p.parse_args(argv)
    from .check import format_summary, summarize
    from .fleet_table import columns_for

    if not is_table_path(args.file):
        raise DataError(f"{args.file}: not a table file (expected {', '.join(TABLE_SUFFIXES)})")
    print(format_summary(summarize(args.file, columns_for(args.file, **column_flags(args)))))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
