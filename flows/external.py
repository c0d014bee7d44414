"""An existing Dask cluster (--scheduler-address): is a scheduler there, do its workers declare
the resource each experiment asks for, and can they reach the Prefect API."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from ddrsa.errors import DDRSAError

CONNECT_TIMEOUT_S = 5.0
EXTERNAL_RESOURCE = "GPU"  # what each experiment asks an existing cluster's workers for


def check_scheduler_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within `timeout` seconds, naming the address, when nothing listens there."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise DDRSAError(f"--scheduler-address {address!r} is not host:port or tcp://host:port")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as exc:
        raise DDRSAError(f"no Dask scheduler answers at {address} ({exc.strerror or exc})") from None


def check_cluster_resources(
    address: str, resource: str = EXTERNAL_RESOURCE, amount: float = 1.0, timeout: float = CONNECT_TIMEOUT_S
) -> list[str]:
    """Refuse (DDRSAError, one line) when no worker connected to the scheduler at `address`
    declares `resource` >= `amount`: Dask would hold every task forever. Returns the hosts of the
    workers that do."""
    from distributed import Client

    try:
        with Client(address, timeout=timeout, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
    except OSError as exc:
        raise DDRSAError(f"no Dask scheduler answers at {address} ({exc})") from None
    fit = [addr for addr, w in workers.items() if (w.get("resources") or {}).get(resource, 0) >= amount]
    if not fit:
        seen = ", ".join(f"{w.get('name')} {w.get('resources') or {}}" for w in list(workers.values())[:4])
        raise DDRSAError(
            f"no worker of the Dask cluster at {address} declares the resource {resource}>={amount:g} "
            f"that each experiment asks for ({len(workers)} worker(s){': ' + seen if seen else ''}); "
            f"start them with `dask worker {address} --resources {resource}=1` and wait until they connect"
        )
    return [urlparse(a if "://" in a else f"tcp://{a}").hostname or "" for a in fit]


def is_this_host(host: str) -> bool:
    """True for a loopback name/address or an address of this machine (one it can bind to)."""
    if host in ("localhost", "") or host.startswith("127.") or host == "::1":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def api_url_warning(scheduler_address: str, api_url: str | None, worker_hosts: list[str] = ()) -> str | None:
    """A warning when the Prefect API URL the workers get is loopback (an unset PREFECT_API_URL: the
    sweep's own server on 127.0.0.1) but the scheduler or a worker is on another host, whose tasks
    then cannot report to the API; None otherwise."""
    api_host = (urlparse(api_url).hostname if api_url else None) or "127.0.0.1"
    if not (api_host in ("localhost", "::1") or api_host.startswith("127.")):
        return None
    sched = urlparse(scheduler_address if "://" in scheduler_address else f"tcp://{scheduler_address}").hostname
    remote = [h for h in [sched, *worker_hosts] if h and not is_this_host(h)]
    if not remote:
        return None
    given = api_url or "127.0.0.1 (the sweep's own server: PREFECT_API_URL is unset)"
    return (
        f"the Prefect API URL the workers get is {given}, but {remote[0]} is another host whose "
        f"tasks cannot reach it; start `prefect server start --host 0.0.0.0` and export "
        f"PREFECT_API_URL=http://<this host's address>:4200/api"
    )


def warn_api_url(scheduler_address: str, worker_hosts: list[str]) -> None:
    """Log api_url_warning() in the flow run's log (or this module's logger outside a run)."""
    import logging

    from prefect.settings import PREFECT_API_URL

    message = api_url_warning(scheduler_address, PREFECT_API_URL.value(), worker_hosts)
    if message is None:
        return
    try:
        from prefect import get_run_logger

        get_run_logger().warning(message)
    except Exception:  # not inside a flow run
        logging.getLogger("ddrsa.cluster").warning(message)
