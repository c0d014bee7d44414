"""The full grid (1,296 experiments, tiny training) on the sweep's own Prefect server, SQLite or PostgreSQL.

    python benchmarks/bench_fullgrid.py --db sqlite   [--root /tmp/ddrsa_bench_fullgrid] [--units 6]
    python benchmarks/bench_fullgrid.py --db postgres  # initdb + pg_ctl in a temporary folder, 127.0.0.1

Runs `python flows/sweep.py --preset full-grid --num-epochs 1 --max-units UNITS --data-source synthetic
--n-workers 2 --no-analysis --output-dir ROOT/DB` twice: fresh, then the same command again (every
experiment finished: the cached re-run). PREFECT_API_URL is unset, so the sweep starts its own server
(its database: OUTPUT_DIR/.prefect/prefect.db, or PREFECT_API_DATABASE_CONNECTION_URL for PostgreSQL).
For each run it reports: wall clock from outside (Python start-up included), the flow's own time, the
server's start-up, seconds to the first "[n/N]" progress line and to the first `progress` artifact above
0 % (polled through the API), CPU seconds of the sweep and its reaped children (server, workers:
comparable under load, unlike wall clock), per-experiment orchestration overhead (flow time minus the training time
per worker, per experiment), peak RSS of the flow process and of the server (VmHWM), error lines in the
server log and the sweep output, and how many experiments were trained again on the re-run.
`--src DIR` runs flows/sweep.py from another checkout (e.g. a `git archive` snapshot, so that edits in
the working tree during an hour-long run do not change the code version between the two runs).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

PROGRESS = re.compile(r"\[(\d+)/(\d+)\]")
SUMMARY = re.compile(r"(\d+) completed \((\d+) cached\), (\d+) failed, (\d+) diverged of (\d+) in (\d+) s")
SERVER_UP = re.compile(r"Prefect server started on (http://127\.0\.0\.1:\d+) in (\d+) s")
ERROR_WORDS = re.compile(
    r"Traceback|database is locked|HTTPStatusError|5\d\d Server Error|"
    r"\bERROR\b|OperationalError|TimeoutError|Crashed",
    re.I,
)


def postgres_bindir() -> Path:
    found = sorted(
        (int(Path(p).parent.parent.name), Path(p).parent)
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if Path(p).parent.parent.name.isdigit()
    )
    if not found or found[-1][0] < 14:
        sys.exit("no PostgreSQL >= 14 under /usr/lib/postgresql (Debian package postgresql)")
    return found[-1][1]


@contextlib.contextmanager
def postgres_server():
    """A throw-away PostgreSQL on 127.0.0.1 (database `prefect` with pg_trgm) as tests/test_postgres.py
    starts it; yields its asyncpg URL and the PostgreSQL version."""
    from flows.server import free_port

    bindir = postgres_bindir()
    folder = Path(tempfile.mkdtemp(prefix="ddrsa-bench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(cmd):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=300)

    try:
        run([*as_user, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        run(
            [
                *as_user,
                bindir / "pg_ctl",
                "-D",
                data,
                "-l",
                folder / "postgres.log",
                "-w",
                "-t",
                "120",
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c max_connections=200",
                "start",
            ]
        )
        psql = [bindir / "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]
        run([*psql, "-d", "postgres", "-c", "CREATE DATABASE prefect"])
        run([*psql, "-d", "prefect", "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm"])
        version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", version, folder / "postgres.log"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _vmhwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                kids = [int(k) for k in Path(task).read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _first_progress_artifact(api_url: str, since: datetime) -> bool:
    import httpx

    try:
        reply = httpx.post(
            f"{api_url}/api/artifacts/filter",
            timeout=5,
            json={"artifacts": {"type": {"any_": ["progress"]}}, "limit": 200},
        )
        return any(
            a.get("data")
            and float(a["data"]) > 0
            and datetime.fromisoformat(a["updated"].replace("Z", "+00:00")) >= since
            for a in reply.json()
        )
    except Exception:
        return False


def run_sweep(cmd: list[str], env: dict, cwd: Path, log: Path) -> dict:
    """Run one sweep and watch it: stdout lines with times, peak memory, the progress artifact."""
    import resource

    res: dict = {"load_before": os.getloadavg()[0]}
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    since = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    RUNNING[:] = [proc]
    peaks = {"flow": 0.0, "server": 0.0, "worker": 0.0}
    api = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peaks["flow"] = max(peaks["flow"], _vmhwm_mb(proc.pid))
            for child in _descendants(proc.pid):
                line = _cmdline(child)
                kind = "server" if "uvicorn" in line else "worker" if "python" in line else None
                if kind:
                    peaks[kind] = max(peaks[kind], _vmhwm_mb(child))
            if "url" in api and "artifact_s" not in res and _first_progress_artifact(api["url"], since):
                res["artifact_s"] = time.perf_counter() - t0
            stop.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    errors: list[str] = []
    with open(log, "a", buffering=1) as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        for line in proc.stdout:
            now = time.perf_counter() - t0
            fh.write(f"{now:8.2f} {line}")
            m = SERVER_UP.search(line)
            if m:
                api["url"], res["server_start_s"] = m.group(1), int(m.group(2))
            if "first_progress_s" not in res and PROGRESS.search(line):
                res["first_progress_s"] = now
            if ERROR_WORDS.search(line):
                errors.append(line.strip()[:300])
            m = SUMMARY.search(line)
            if m:
                res.update(zip(("completed", "cached", "failed", "diverged", "n", "flow_wall_s"), map(int, m.groups())))
    res["rc"] = proc.wait()
    RUNNING.clear()
    res["wall_s"] = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sweep and every process it reaped
    res["cpu_s"] = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    stop.set()
    watcher.join()
    res.update(
        peak_flow_mb=peaks["flow"],
        peak_server_mb=peaks["server"],
        peak_worker_mb=peaks["worker"],
        sweep_error_lines=len(errors),
        sweep_error_examples=errors[:5],
        load_after=os.getloadavg()[0],
    )
    return res


RUNNING: list[subprocess.Popen] = []  # the sweep being measured, killed (its process group) if we are


def _stop(signum, _frame):
    """SIGTERM/SIGINT: kill the sweep's process group, then unwind (PostgreSQL is stopped)."""
    for proc in RUNNING:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    sys.exit(128 + signum)


def records(out: Path) -> list[dict]:
    try:
        return json.loads((out / "all_results.json").read_text())
    except (OSError, ValueError):
        return []


def server_errors(out: Path) -> list[str]:
    log = out / "prefect-server.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line[:300] for line in text.splitlines() if ERROR_WORDS.search(line)]


def skip_cost(units: int, epochs: int) -> dict:
    """In this process, the part of a cached re-run that grows with the grid: expand and prepare
    the full grid, load all_results.json of finished records (each stamped with its cache key, its
    result file present), decide for each experiment that it need not be submitted (the same calls
    as flows/sweep.py), and write the manifest twice. Seconds per step, for 1,296 experiments."""
    import hashlib

    from ddrsa.sweep.results import ResultsStore, make_record, write_manifest
    from ddrsa.version import code_version
    from flows.options import build_spec
    from flows.prepare import data_key, prepare
    from flows.tasks import RESULTS_CACHE, cache_key, finished_under_key

    t = {}
    t0 = time.perf_counter()
    spec = build_spec("full-grid", {"num_epochs": epochs, "max_units": units, "data_source": "synthetic"})
    planned, versions = prepare(spec)
    t["prepare_s"] = time.perf_counter() - t0
    version = code_version()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / RESULTS_CACHE).mkdir()

        def params(item):
            return dict(
                planned=item,
                output_dir=str(out),
                code_version=version,
                data_version=versions[data_key(item_configs[item["experiment_id"]])],
            )

        item_configs = {p.experiment_id: p.config for p in planned}
        recs = []
        for p in planned:
            item = p.as_dict()
            key = cache_key(None, params(item))
            metrics = {"rul_rmse": 20.0, "concordance_index": 0.9, "data_version": "x" * 16}
            recs.append(
                {
                    **make_record(item, status="completed", result={"metrics": metrics, "train_seconds": 1.0}),
                    "cache_key": key,
                }
            )
            (out / RESULTS_CACHE / key).write_text(hashlib.sha256(key.encode()).hexdigest())
        (out / "all_results.json").write_text(json.dumps(recs))
        t0 = time.perf_counter()
        store = ResultsStore(out)
        t["load_records_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        todo = [
            item
            for item in (p.as_dict() for p in planned)
            if not finished_under_key(store.get(item["experiment_id"]), cache_key(None, params(item)), out)
        ]
        t["decide_s"] = time.perf_counter() - t0
        assert not todo, len(todo)
        t0 = time.perf_counter()
        for _ in range(2):
            write_manifest(
                out,
                grid=spec.grid(),
                planned=[p.as_dict() for p in planned],
                code_version=version,
                data_versions=versions,
                started_at="now",
                extra={"spec": spec.model_dump(mode="json")},
            )
        t["manifest_twice_s"] = time.perf_counter() - t0
    t["n"] = len(planned)
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=["sqlite", "postgres"])
    p.add_argument(
        "--skip-cost",
        action="store_true",
        help="only time, in this process, what grows with the grid in a cached re-run (skip_cost)",
    )
    p.add_argument("--root", default="/tmp/ddrsa_bench_fullgrid")
    p.add_argument("--src", default=str(ROOT_DIR), help="checkout whose flows/sweep.py runs (default: this one)")
    p.add_argument("--units", type=int, default=6)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--reruns", type=int, default=1, help="re-runs of the finished grid")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more sweep flags (e.g. --models paper)")
    args = p.parse_args()
    if args.skip_cost:
        print(json.dumps({**skip_cost(args.units, args.epochs), "load": os.getloadavg()}))
        return
    if args.db is None:
        p.error("--db is required")
    for sig in (signal.SIGTERM, signal.SIGINT):  # a background job may have SIGINT ignored: both
        signal.signal(sig, _stop)
    src = Path(args.src).resolve()
    root = Path(args.root) / args.db
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    out = root / "out"
    cmd = [
        sys.executable,
        "flows/sweep.py",
        "--preset",
        "full-grid",
        "--num-epochs",
        str(args.epochs),
        "--max-units",
        str(args.units),
        "--data-source",
        "synthetic",
        "--n-workers",
        str(args.n_workers),
        "--no-analysis",
        "--output-dir",
        str(out),
        *args.extra,
    ]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and "DATABASE" not in k}
    env.update(
        PYTHONUNBUFFERED="1",
        PREFECT_HOME=str(root / "prefect-home"),
        PYTHONPATH=str(src),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    head_file = src / ".git-head"  # a snapshot's commit, written next to its `git archive`
    git = (
        head_file.read_text().strip()
        if head_file.exists()
        else subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    report = {
        "db": args.db,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": cmd,
        "src": str(src),
        "git_head": git,
        "runs": [],
    }
    with contextlib.ExitStack() as stack:
        if args.db == "postgres":
            url, version, _pglog = stack.enter_context(postgres_server())
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = url
            report["postgres"] = version
        for i in range(1 + args.reruns):
            label = "first" if i == 0 else f"rerun{i}"
            before = {r["experiment_id"]: r.get("finished_at") for r in records(out)}
            print(f"# {args.db} {label}: uptime {os.getloadavg()}", flush=True)
            res = run_sweep(cmd, env, src, root / "sweep.log")
            after = records(out)
            recs = [r for r in after if before.get(r["experiment_id"]) != r.get("finished_at")]
            train = sum(r.get("train_seconds") or 0.0 for r in recs)
            flow = res.get("flow_wall_s") or res["wall_s"]
            res.update(
                run=label,
                n_records=len(after),
                trained=len(recs),
                sum_train_s=train,
                overhead_ms=1000 * (flow - train / args.n_workers) / max(len(after), 1),
            )
            errs = server_errors(out)
            res.update(server_error_lines=len(errs), server_error_examples=errs[:5])
            report["runs"].append(res)
            print(json.dumps(res), flush=True)
    (root / "bench_fullgrid.json").write_text(json.dumps(report, indent=1))
    print(f"\n{args.db}: {report['date']} head {git}" + (f", {report.get('postgres')}" if "postgres" in report else ""))
    print(
        "| run | wall s | CPU s | flow s | server start s | first [n/N] line s | first progress artifact s | "
        "trained | cached | failed | overhead ms/exp | flow peak RSS MB | server peak MB | server/sweep error lines "
        "| load 1m before/after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in report["runs"]:
        print(
            f"| {r['run']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r.get('flow_wall_s', '?')} | {r.get('server_start_s', '?')} | "
            f"{r.get('first_progress_s', float('nan')):.1f} | {r.get('artifact_s', float('nan')):.1f} | "
            f"{r['trained']} | {r.get('cached', '?')} | {r.get('failed', '?')} | {r['overhead_ms']:.0f} | "
            f"{r['peak_flow_mb']:.0f} | {r['peak_server_mb']:.0f} | {r['server_error_lines']}/{r['sweep_error_lines']} "
            f"| {r['load_before']:.2f}/{r['load_after']:.2f} |"
        )


if __name__ == "__main__":
    main()
