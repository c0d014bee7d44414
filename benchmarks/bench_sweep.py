"""Sweep throughput, 1 -> 2 worker scaling, orchestration overhead, re-run and resume-after-kill times.

    python benchmarks/bench_sweep.py [--quick] [--root /tmp/ddrsa_bench_sweep] [--parts scaling rerun kill noserver]

Every sweep is a subprocess `python flows/sweep.py ... --output-dir DIR --no-analysis` (wall clock
measured from outside, so Python start-up and imports count). Unless stated, one Prefect API server
is started by this script (`flows.server.start_server`) and exported as PREFECT_API_URL to the
sweeps ("shared server"); the `noserver` part runs a sweep with PREFECT_API_URL unset, so the sweep
starts its own temporary server (its start-up then counts in the wall time). PREFECT_HOME points at
a private folder under --root so other people's Prefect state is untouched.

  scaling   16 experiments (paper, gru_basic x batch 32 64 128 256 x seeds 1 2, synthetic turbofan,
            20 units, 1 in 32 windows, K=32, L=16, 3 epochs), --n-workers 1 then 2, fresh output folders:
            experiments/hour, speed-up, overhead = wall - sum(train_seconds)/parallelism, per task.
  rerun     the 12-experiment grid (batch 32 64 128), run to completion, then the same command again:
            the second run should be all cached; its wall time.
  kill      the 12-experiment grid fresh (--n-workers 2), SIGKILL to the sweep's process group when
            about half of the results are in all_results.json, then the same command again: its wall
            time and how many experiments were trained again (train_seconds of the records).
  noserver  the `rerun` re-run again (all cached), but with PREFECT_API_URL unset.
  overhead  24 short experiments (the scaling grid with seeds 1 2 3, batch 32 64 128 256), --n-workers
            1 then 2: sweep wall time against the sum of experiment times, per-task overhead in ms.
  scaling-long
            the 1 -> 2 worker scaling with experiments long enough that the sweep's fixed start-up
            (~18 s) does not dominate: 16 experiments (gru_basic x batch 32 64 x seeds 1-8, synthetic
            turbofan, 20 units, 1 in 32 windows, K=64, L=32, --long-epochs epochs, no early stop), --n-workers 1 then 2.
            Also reports the span from the first experiment's start to the last one's finish.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

# --window-stride 32 is explicit so the measurement never depends on which defaults a flagged run takes
GRID = [
    "--data-source",
    "synthetic",
    "--max-units",
    "20",
    "--window-stride",
    "32",
    "--lookback-window",
    "32",
    "--pred-horizon",
    "16",
    "--num-epochs",
    "3",
    "--models",
    "paper",
    "gru_basic",
    "--datasets",
    "turbofan",
]
BS16 = ["--batch-sizes", "32", "64", "128", "256"]
BS12 = ["--batch-sizes", "32", "64", "128"]
LONG_GRID = [
    "--data-source",
    "synthetic",
    "--max-units",
    "20",
    "--window-stride",
    "32",
    "--lookback-window",
    "64",
    "--pred-horizon",
    "32",
    "--patience",
    "100000",
    "--models",
    "gru_basic",
    "--batch-sizes",
    "32",
    "64",
    "--seeds",
    *map(str, range(1, 9)),
    "--datasets",
    "turbofan",
]


def short_grid(batch_flags: list[str], seeds: tuple[str, ...], quick: bool) -> list[str]:
    """GRID with these batch sizes and seeds; --quick trains 1 epoch instead of 3."""
    grid = [*GRID, *batch_flags, "--seeds", *seeds]
    if quick:
        grid[grid.index("--num-epochs") + 1] = "1"
    return grid


def sweep_cmd(out: Path, workers: int, grid: list[str]) -> list[str]:
    return [
        sys.executable,
        "flows/sweep.py",
        *grid,
        "--n-workers",
        str(workers),
        "--output-dir",
        str(out),
        "--no-analysis",
    ]


def records(out: Path) -> list[dict]:
    try:
        return json.loads((out / "all_results.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


SHARED_API = [""]  # the shared server's URL (external workers always report there)
CLUSTER_FAIL = "Failed to create distributed.deploy.spec.SpecCluster"


class ExternalCluster:
    """The same worker spec as flows/cluster.py (Nanny per worker, DDRSA_TORCH_THREADS = 2 // n, one
    experiment slot each) but with a 120 s start-up timeout instead of death_timeout=10, which a loaded
    2-core machine misses (importing torch+prefect+distributed took 41 s wall at load 7.4). The sweep is
    then pointed at it with --scheduler-address (workers declare GPU=1 as flows/cluster.py expects)."""

    def __init__(self, n: int, env: dict):
        from distributed import Client, Nanny, Scheduler, SpecCluster

        cores = os.cpu_count() or 2
        threads = max(1, cores // n)
        t0 = time.perf_counter()
        workers = {
            f"cpu{i}": {
                "cls": Nanny,
                "options": {
                    "nthreads": 1,
                    "host": "127.0.0.1",
                    "dashboard": False,
                    "death_timeout": 120,
                    "name": f"cpu{i}",
                    "resources": {"GPU": 1, "CPU": 1},
                    "env": {
                        "CUDA_VISIBLE_DEVICES": "",
                        "DDRSA_TORCH_THREADS": str(threads),
                        "OMP_NUM_THREADS": str(threads),
                        "PREFECT_API_URL": env.get("PREFECT_API_URL") or SHARED_API[0],
                        "PREFECT_HOME": env["PREFECT_HOME"],
                    },
                },
            }
            for i in range(n)
        }
        self.cluster = SpecCluster(
            workers=workers,
            scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}},
        )
        with Client(self.cluster) as client:
            client.wait_for_workers(n, timeout=180)
            self.worker_pids = list(client.run(os.getpid).values())
        self.startup_s = time.perf_counter() - t0
        self.address = self.cluster.scheduler_address

    def close(self):
        self.cluster.close()


def run_sweep(cmd: list[str], env: dict, log: Path, workers: int | None = None, mode: str = "auto") -> dict:
    """Run one sweep; with mode auto, a sweep whose own Dask cluster fails to start (worker start-up
    timeout under load) is rerun once on an ExternalCluster of the same shape."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    ext = None
    if mode == "external":
        ext = ExternalCluster(workers or 2, env)
        cmd = [*cmd, "--scheduler-address", ext.address]
    start = log.stat().st_size if log.exists() else 0
    try:
        t0 = time.perf_counter()
        with open(log, "ab") as fh:
            rc = subprocess.run(cmd, cwd=ROOT_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
    finally:
        if ext:
            ext.close()
    text = log.read_text(errors="replace")[start:]
    if mode == "auto" and CLUSTER_FAIL in text:
        print(
            f"  own Dask cluster failed to start after {wall:.0f}s (load {os.getloadavg()[0]:.2f}); "
            "rerunning on an external cluster",
            flush=True,
        )
        res = run_sweep(cmd, env, log, workers, "external")
        res["own_cluster_failed_after_s"] = wall
        return res
    m = re.findall(r"(\d+) completed \((\d+) cached\), (\d+) failed, (\d+) diverged of (\d+) in (\d+) s", text)
    summary = dict(zip(("completed", "cached", "failed", "diverged", "n", "flow_wall"), map(int, m[-1]))) if m else {}
    return {
        "rc": rc,
        "wall": wall,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "cluster": mode,
        "cluster_startup_s": ext.startup_s if ext else None,
        **summary,
    }


def scaling_stats(res: dict, out: Path, workers: int) -> dict:
    from datetime import datetime

    recs = [r for r in records(out) if r["status"] == "completed"]
    total_train = sum(r["train_seconds"] for r in recs)
    n = max(len(recs), 1)
    if recs:  # first experiment start -> last finish: the flow's execution span without its fixed start-up
        span = (
            max(datetime.fromisoformat(r["finished_at"]) for r in recs)
            - min(datetime.fromisoformat(r["started_at"]) for r in recs)
        ).total_seconds()
        res.update(span_s=span, span_overhead_ms=1000 * (span - total_train / workers) / n)
    res.update(
        n_records=len(recs),
        sum_train=total_train,
        exp_per_hour=3600 * len(recs) / res["wall"],
        overhead_ms=1000 * (res["wall"] - total_train / workers) / n,
        peak_rss_mb=max((r.get("peak_rss_mb") or 0) for r in recs) if recs else None,
        median_train=sorted(r["train_seconds"] for r in recs)[len(recs) // 2] if recs else None,
    )
    return res


def worker_pair(part: str, grid: list[str], root: Path, env: dict, cluster: str, results: dict) -> None:
    """The same grid with --n-workers 1, then 2, in fresh folders: results[f"{part}_w1"], [f"{part}_w2"]."""
    for workers in (1, 2):
        key = f"{part}_w{workers}"
        out = root / key
        cmd = sweep_cmd(out, workers, grid)
        print("$", shlex.join(cmd), flush=True)
        results[key] = scaling_stats(run_sweep(cmd, env, root / f"{key}.log", workers, cluster), out, workers)
        print("  ", results[key], flush=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sweep we started (its own session/process group: the sweep, its server, its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch per experiment, scaling part only")
    p.add_argument("--root", default="/tmp/ddrsa_bench_sweep")
    p.add_argument(
        "--cluster",
        default="auto",
        choices=["auto", "own", "external"],
        help="own: the sweep's own local Dask cluster; external: see ExternalCluster; auto: own, "
        "external when own fails to start",
    )
    p.add_argument(
        "--parts",
        nargs="+",
        default=["scaling", "rerun", "kill", "noserver"],
        choices=["scaling", "rerun", "kill", "noserver", "scaling-long", "overhead"],
    )
    p.add_argument("--long-epochs", type=int, default=100, help="epochs per experiment in scaling-long")
    p.add_argument(
        "--torch-threads",
        type=int,
        help="DDRSA_TORCH_THREADS for every worker (default: the sweep's split, 2 // workers "
        "on 2 cores); 1 compares identical single-threaded workers",
    )
    args = p.parse_args()
    if args.quick:
        args.parts = ["scaling"]
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect_home"), "PYTHONUNBUFFERED": "1"}
    os.environ["PREFECT_HOME"] = env["PREFECT_HOME"]
    env.pop("PREFECT_API_URL", None)
    if args.torch_threads:
        env["DDRSA_TORCH_THREADS"] = str(args.torch_threads)
    os.environ.pop("PREFECT_API_URL", None)
    from flows.server import start_server, stop_server

    t0 = time.perf_counter()
    server, api_url = start_server(log_path=root / "server.log")
    print(
        f"# shared Prefect server {api_url} up in {time.perf_counter() - t0:.1f}s; load {os.getloadavg()}", flush=True
    )
    shared = {**env, "PREFECT_API_URL": api_url}
    SHARED_API[0] = api_url
    results: dict[str, dict] = {}
    try:
        if "scaling" in args.parts:
            worker_pair("scaling", short_grid(BS16, ("1", "2"), args.quick), root, shared, args.cluster, results)
        if "overhead" in args.parts:
            worker_pair("overhead", short_grid(BS16, ("1", "2", "3"), args.quick), root, shared, args.cluster, results)
        if "scaling-long" in args.parts:
            worker_pair(
                "scaling_long", [*LONG_GRID, "--num-epochs", str(args.long_epochs)], root, shared, args.cluster, results
            )
        if "rerun" in args.parts or "noserver" in args.parts:
            out = root / "rerun12"
            cmd = sweep_cmd(out, 2, short_grid(BS12, ("1", "2"), args.quick))
            print("$", shlex.join(cmd), "  (first run, then again)", flush=True)
            results["rerun_first"] = scaling_stats(
                run_sweep(cmd, shared, root / "rerun12.log", 2, args.cluster), out, 2
            )
            print("  ", results["rerun_first"], flush=True)
            before = {r["experiment_id"]: r["finished_at"] for r in records(out)}
            results["rerun_second"] = run_sweep(cmd, shared, root / "rerun12.log", 2, args.cluster)
            after = {r["experiment_id"]: r["finished_at"] for r in records(out)}
            results["rerun_second"]["retrained"] = sum(after.get(k) != v for k, v in before.items())
            print("  ", results["rerun_second"], flush=True)
            if "noserver" in args.parts:
                print("  again with PREFECT_API_URL unset (the sweep starts its own server)", flush=True)
                results["rerun_noserver"] = run_sweep(cmd, env, root / "rerun12_noserver.log", 2, args.cluster)
                print("  ", results["rerun_noserver"], flush=True)
        if "kill" in args.parts:
            out = root / "kill12"
            cmd = sweep_cmd(out, 2, short_grid(BS12, ("1", "2"), args.quick))
            print("$", shlex.join(cmd), "  (SIGKILL at >= 6 results, then again)", flush=True)
            ext = ExternalCluster(2, shared) if args.cluster == "external" else None
            if ext:
                cmd_kill = [*cmd, "--scheduler-address", ext.address]
            else:
                cmd_kill = cmd
            t0 = time.perf_counter()
            with open(root / "kill12.log", "ab") as fh:
                proc = subprocess.Popen(
                    cmd_kill, cwd=ROOT_DIR, env=shared, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
                )
                while proc.poll() is None and len(records(out)) < 6:
                    time.sleep(0.2)
                done_at_kill = len(records(out))
                kill_group(proc)
                if ext:  # the workers die with the sweep, as they do with its own local cluster
                    for pid in ext.worker_pids:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    ext.close()
            killed_after = time.perf_counter() - t0
            before = {r["experiment_id"]: r["finished_at"] for r in records(out)}
            res = run_sweep(cmd, shared, root / "kill12.log", 2, args.cluster)
            after = records(out)
            res.update(
                done_at_kill=done_at_kill,
                killed_after_s=killed_after,
                retrained=sum(1 for r in after if before.get(r["experiment_id"]) != r["finished_at"]),
                retrained_train_seconds=sum(
                    r["train_seconds"] for r in after if before.get(r["experiment_id"]) != r["finished_at"]
                ),
                resumed_partial=sum(
                    1
                    for r in after
                    if before.get(r["experiment_id"]) != r["finished_at"]
                    and r.get("epochs_trained", 0)
                    and r["train_seconds"] > 0
                ),
                n_after=len(after),
            )
            results["kill"] = res
            print("  ", res, flush=True)
    finally:
        stop_server(server)
    (root / "bench_sweep.json").write_text(json.dumps(results, indent=1))
    print("\n| measurement | wall s | detail | load avg 1m (before/after) |\n|---|---|---|---|")
    for key, r in results.items():
        if key.startswith(("scaling", "overhead")) or key == "rerun_first":
            if "span_s" in r:
                print(
                    f"| {key} span | {r['span_s']:.1f} | first start -> last finish, "
                    f"{r['span_overhead_ms']:.0f} ms/experiment over training | |"
                )
            detail = (
                f"{r.get('n_records')} done, {r['exp_per_hour']:.0f} exp/h, sum train {r['sum_train']:.1f}s, "
                f"median train {r['median_train']:.1f}s, overhead {r['overhead_ms']:.0f} ms/experiment, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB/worker"
            )
        elif key == "kill":
            detail = (
                f"killed after {r['killed_after_s']:.0f}s with {r['done_at_kill']} results in; rerun trained "
                f"{r['retrained']} ({r['retrained_train_seconds']:.1f}s of training), {r['n_after']} results"
            )
        else:
            detail = f"{r.get('completed')} completed ({r.get('cached')} cached), retrained {r.get('retrained', '-')}"
        print(
            f"| {key} | {r['wall']:.1f} (flow {r.get('flow_wall', '?')}) | {detail} | "
            f"{r['load_before']:.2f}/{r['load_after']:.2f} |"
        )
    for part in ("scaling", "overhead", "scaling_long"):
        one, two = results.get(f"{part}_w1"), results.get(f"{part}_w2")
        if one and two:
            print(
                f"{part} speed-up 1 -> 2 workers: {one['wall'] / two['wall']:.2f}x wall, "
                f"{one.get('span_s', 0) / max(two.get('span_s', 0), 1e-9):.2f}x span"
            )


if __name__ == "__main__":
    main()
