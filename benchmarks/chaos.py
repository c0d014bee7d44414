"""Chaos run: a 60-experiment tiny sweep under repeated faults loses nothing and retrains nothing.

    nice -n 19 python benchmarks/chaos.py [--runs 3] [--root /tmp/ddrsa_chaos] [--quick]

Per run: a fault-free sweep (fresh folder) gives the reference wall clock. Then the same grid in
another fresh folder while this script SIGKILLs a random Dask worker process every 15-20 s, and
once (at 40% of the fault-free wall time, once some results are in) SIGKILLs the sweep's whole process group; the same
command is then started again, still under worker kills, until it ends. A reader thread parses
all_results.json every 0.2 s. Reported per run: faults injected, experiments finished,
retrained (finished before the sweep kill, trained again after: checkpoint_last.pt rewritten;
must be 0), lost (planned, not completed at the end; must be 0), reads of all_results.json and
how many were invalid (must be 0), wall clock against the fault-free run.
Grid: paper, gru_basic, lstm_basic x batch 16 24 32 48 64 x seeds 1-4 (synthetic turbofan,
12 units, 1 in 8 windows, K=32, L=16, 3 epochs), --n-workers 2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep_cmd(out: Path, quick: bool) -> list[str]:
    seeds = ["1", "2"] if quick else ["1", "2", "3", "4"]
    return [
        sys.executable,
        "flows/sweep.py",
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "gru_basic",
        "lstm_basic",
        "--batch-sizes",
        "16",
        "24",
        "32",
        "48",
        "64",
        "--seeds",
        *seeds,
        "--data-source",
        "synthetic",
        "--max-units",
        "12",
        "--window-stride",
        "8",
        "--lookback-window",
        "32",
        "--pred-horizon",
        "16",
        "--num-epochs",
        "3",
        "--patience",
        "50",
        "--n-workers",
        "2",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]


def group_workers(pgid: int) -> list[int]:
    """Dask worker processes (multiprocessing spawn children) of process group pgid."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX" and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


class Reader(threading.Thread):
    """Parse all_results.json every 0.2 s; count reads and invalid ones."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.reads, self.invalid, self.stop = path, 0, 0, threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                continue
            self.reads += 1
            try:
                assert isinstance(json.loads(text), list)
            except (ValueError, AssertionError):
                self.invalid += 1


def run_plain(cmd: list[str], env: dict) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(proc.stderr[-2000:])
    return time.monotonic() - t0


def chaos_run(out: Path, cmd: list[str], env: dict, crash_at: float, rng: random.Random) -> dict:
    reader = Reader(out / "all_results.json")
    reader.start()
    faults = {"worker_kills": 0, "sweep_kills": 0}
    t0 = time.monotonic()
    snapshot: dict[str, int] = {}
    for attempt in (1, 2):
        log = open(out.parent / f"{out.name}-attempt{attempt}.log", "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        next_kill = time.monotonic() + rng.uniform(15, 20)
        while proc.poll() is None:
            now = time.monotonic()
            if attempt == 1 and now - t0 >= crash_at and reader.reads:  # some results are in
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                faults["sweep_kills"] += 1
                time.sleep(1)  # let the kernel reap the group
                snapshot = {
                    str(p.parent): p.stat().st_mtime_ns
                    for p in out.glob("logs/**/checkpoint_last.pt")
                    if (p.parent / "test_metrics.json").exists()
                }
                break
            if now >= next_kill:
                workers = group_workers(proc.pid)
                if workers:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    faults["worker_kills"] += 1
                next_kill = now + rng.uniform(15, 20)
            time.sleep(0.1)
        if attempt == 1 and not faults["sweep_kills"]:
            break  # finished before the planned crash (should not happen)
    wall = time.monotonic() - t0
    reader.stop.set()
    reader.join()
    records = json.loads((out / "all_results.json").read_text())
    planned = json.loads((out / "experiment_manifest.json").read_text())["experiments"]
    done = {r["experiment_id"] for r in records if r["status"] == "completed"}
    retrained = sum(1 for d, mtime in snapshot.items() if (Path(d) / "checkpoint_last.pt").stat().st_mtime_ns != mtime)
    return {
        **faults,
        "finished": len(done),
        "planned": len(planned),
        "lost": len([p for p in planned if p["experiment_id"] not in done]),
        "finished_before_sweep_kill": len(snapshot),
        "retrained": retrained,
        "failed": [r["name"] for r in records if r["status"] != "completed"],
        "reads": reader.reads,
        "invalid_reads": reader.invalid,
        "wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--root", type=Path, default=Path("/tmp/ddrsa_chaos"))
    p.add_argument("--quick", action="store_true", help="30 experiments")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    env = {
        **os.environ,
        "DDRSA_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    rng = random.Random(args.seed)
    results = []
    for i in range(1, args.runs + 1):
        clean, chaotic = args.root / f"run{i}-clean", args.root / f"run{i}-chaos"
        for folder in (clean, chaotic):
            shutil.rmtree(folder, ignore_errors=True)
        reference = run_plain(sweep_cmd(clean, args.quick), env)
        res = chaos_run(chaotic, sweep_cmd(chaotic, args.quick), env, 0.4 * reference, rng)
        res["fault_free_wall_s"] = reference
        results.append(res)
        print(
            f"run {i}: {res['worker_kills']} worker kills + {res['sweep_kills']} sweep kill; "
            f"{res['finished']}/{res['planned']} finished, retrained {res['retrained']} "
            f"(of {res['finished_before_sweep_kill']} finished before the sweep kill), lost {res['lost']}, "
            f"all_results.json valid at {res['reads'] - res['invalid_reads']}/{res['reads']} reads; "
            f"wall {res['wall_s']:.0f} s vs {reference:.0f} s fault-free"
            + (f"; failed: {res['failed']}" if res["failed"] else ""),
            flush=True,
        )
        (args.root / "chaos.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
