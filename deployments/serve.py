"""Serve every preset deployment of `ddrsa-sweep` from this process: no work pool, no worker.

    prefect server start --host 127.0.0.1 --port 4200          # terminal 1 (UI at http://127.0.0.1:4200)
    export PREFECT_API_URL=http://127.0.0.1:4200/api             # terminals 2 and 3
    python -m deployments.serve                                  # terminal 2: keeps running
    prefect deployment run ddrsa-sweep/batch-study --param num_epochs=5   # terminal 3

The alternative to `prefect deploy` + `prefect worker start` (prefect.yaml): the same deployment
names, the same parameters, so use ONE of the two against a server, never both (runs would go to
the wrong executor). This script refuses to take over deployments that `prefect deploy` registered
for a work pool; delete those first (`prefect deployment delete ddrsa-sweep/<name>`).
Flow runs start in the repository root, so relative output folders land in ./parallel_experiments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ddrsa.cli import OneLineParser, run_cli  # noqa: E402
from ddrsa.errors import DDRSAError  # noqa: E402
from deployments.presets import PRESETS, deployment_parameters, preset_schedule  # noqa: E402

FLOW_NAME = "ddrsa-sweep"
TIMEZONE_VAR = "DDRSA_NIGHTLY_TZ"


def build_deployments(names: list[str], timezone: str = "UTC") -> list:
    """RunnerDeployments of `ddrsa_sweep`, one per preset (same names and parameters as prefect.yaml)."""
    from prefect.schedules import Cron

    from deployments.generate import deployment_description
    from flows.sweep import ddrsa_sweep

    out = []
    for name in names:
        cron = preset_schedule(name)
        out.append(
            ddrsa_sweep.to_deployment(
                name=name,
                parameters=deployment_parameters(name),
                description=deployment_description(name),
                tags=["ddrsa", "preset"] + (["nightly"] if name == "nightly" else []),
                schedules=[Cron(cron, timezone=timezone)] if cron else None,
            )
        )
    return out


def api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_not_deployed_to_pool(names: list[str]) -> None:
    """Refuse when `prefect deploy` already registered one of these names for a work pool."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    taken = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                dep = client.read_deployment_by_name(f"{FLOW_NAME}/{name}")
            except ObjectNotFound:
                continue
            if dep.work_pool_name:
                taken.append((name, dep.work_pool_name))
    if taken:
        pools = " ".join(sorted({pool for _, pool in taken}))
        raise DDRSAError(
            f"{FLOW_NAME}/{{{','.join(n for n, _ in taken)}}} are already deployed with "
            f"`prefect deploy` for work pool {pools}; use its worker (`prefect worker start --pool ddrsa-local`) or delete them "
            "(`prefect deployment delete ddrsa-sweep/NAME`) before serving"
        )


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m deployments.serve",
        description="Serve the preset deployments of ddrsa-sweep (needs PREFECT_API_URL).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(PRESETS),
        metavar="PRESET",
        help=f"serve only these presets (default: all: {' '.join(PRESETS)})",
    )
    parser.add_argument(
        "--limit", type=int, default=1, help="flow runs at once (default 1: each sweep already uses every GPU/core)"
    )
    parser.add_argument(
        "--timezone",
        default=os.environ.get(TIMEZONE_VAR, "UTC"),
        help=f"timezone of nightly's 02:00 (default ${TIMEZONE_VAR} or UTC)",
    )
    args = parser.parse_args(argv)
    if args.limit < 1:
        raise DDRSAError("--limit must be at least 1")
    _check_timezone(args.timezone)
    url = api_url()
    if not url:
        raise DDRSAError(
            "PREFECT_API_URL is not set: start `prefect server start --host 127.0.0.1` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (see docs/DEPLOYMENTS.md)"
        )
    names = args.only or list(PRESETS)
    os.chdir(ROOT)  # entrypoint flows/sweep.py and relative output folders resolve from the repo root
    try:
        check_not_deployed_to_pool(names)
    except DDRSAError:
        raise
    except Exception as exc:  # server down, wrong URL
        raise DDRSAError(f"cannot reach the Prefect server at {url} ({type(exc).__name__}: {exc})") from None
    from prefect import serve

    print(
        f"serving {len(names)} deployments of {FLOW_NAME} on {url}: {' '.join(names)} "
        f"(nightly at 02:00 {args.timezone}); Ctrl+C stops",
        flush=True,
    )
    serve(*build_deployments(names, args.timezone), limit=args.limit, print_starting_message=False)
    return 0


def _check_timezone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DDRSAError(f"unknown timezone {tz!r}; use an IANA name such as UTC or Europe/Berlin") from None


if __name__ == "__main__":
    sys.exit(run_cli("python -m deployments.serve", main))
