"""The sweep's output folder: manifest, all_results.json (atomic), result records, lock."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import TextIO, TypedDict, cast

from ddrsa.atomic import append_json_line, read_json, read_json_lines, write_json
from ddrsa.config import is_baseline
from ddrsa.errors import DDRSAError
from ddrsa.metrics import RANKED_METRICS, VAL_LOSS, VAL_PREFIX, VALIDATION_KEYS, val_key  # noqa: F401 (re-exported)
from ddrsa.status import COMPLETED, Status

MANIFEST = "experiment_manifest.json"
RESULTS = "all_results.json"
JOURNAL = ".all_results.journal.jsonl"  # records not yet compacted into RESULTS
LOCK = ".sweep.lock"
HYPERPARAMETERS = (
    "dataset",
    "subset",
    "model",
    "batch_size",
    "learning_rate",
    "lambda_param",
    "nasa_weight",
    "dropout",
    "seed",
    "num_epochs",
)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def check_output_dir(path: Path) -> Path:
    """The output folder must be a folder (created if missing) that we can write."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DDRSAError(f"output folder {path} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DDRSAError(f"cannot create output folder {path}: {exc.strerror}") from None
    try:  # a real write: os.access says yes to root even on a read-only or immutable folder
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise DDRSAError(f"output folder {path} is not writable ({exc.strerror})") from None
    return path


def safe_run_dir(output_dir: Path, relative: str) -> Path:
    """Resolve a run folder and refuse one that escapes the output folder."""
    root = Path(output_dir).resolve()
    target = (root / relative).resolve()
    if root != target and root not in target.parents:
        raise DDRSAError(f"run folder {relative!r} escapes the output folder")
    return target


class _RecordFields(TypedDict):
    """The keys `make_record` writes: the experiment, its HYPERPARAMETERS, its outcome."""

    experiment_id: str
    index: int
    name: str
    dataset: str
    subset: str
    model: str
    batch_size: int
    learning_rate: float
    lambda_param: float
    nasa_weight: float
    dropout: float
    seed: int
    split_seed: int  # which units were held out (--split-seeds)
    age_input: bool  # engine age fed as an input channel (--age-input)
    num_epochs: int
    is_baseline: bool  # model in BASELINE_MODELS: a yardstick, never the best DDRSA configuration
    status: Status
    metrics: dict  # test_metrics.json (docs/CONTRACTS.md) when completed, else {}
    train_seconds: float
    epochs_trained: int
    best_epoch: int | None
    diverged_epoch: int | None
    resumed_from_epoch: int
    worker: str | None  # Dask worker name (gpu0, cpu1), None outside a worker
    device: str
    attempts: int
    error: str | None
    run_dir: str  # relative to the output folder
    data_source: str | None
    test_split: str
    peak_rss_mb: float | None
    peak_gpu_mb: float | None
    started_at: str | None  # ISO 8601 UTC
    finished_at: str


class ResultRecord(_RecordFields, total=False):
    """One record of all_results.json (docs/CONTRACTS.md). The sweep may add: `cache_key` (the
    Prefect cache key it finished under), `best_val_loss` (a paused run), and an adaptive
    search's `search`, `rung`, `rung_epochs`, `promoted`, `trial` (flows/search.py)."""

    cache_key: str
    best_val_loss: float | None
    search: str
    rung: int | None
    rung_epochs: list[int]
    promoted: bool
    trial: int


def make_record(
    planned: dict,
    *,
    status: Status,
    result: dict | None = None,
    worker: str | None = None,
    attempts: int = 1,
    error: str | None = None,
    started_at: str | None = None,
) -> ResultRecord:
    """A result record as in docs/CONTRACTS.md from a planned experiment and a TrainResult dict."""
    result = result or {}
    config = planned["config"]
    record = {"experiment_id": planned["experiment_id"], "index": planned["index"], "name": planned["name"]}
    record.update({key: config[key] for key in HYPERPARAMETERS})
    record["is_baseline"] = is_baseline(config["model"])  # a yardstick: never the best DDRSA configuration
    record.update(
        {
            "status": status,
            "metrics": result.get("metrics", {}) if status == COMPLETED else {},
            "train_seconds": result.get("train_seconds", 0.0),
            "epochs_trained": result.get("epochs_trained", 0),
            "best_epoch": result.get("best_epoch"),
            "diverged_epoch": result.get("diverged_epoch"),
            "resumed_from_epoch": result.get("resumed_from_epoch", 0),
            "worker": worker,
            "device": result.get("device", "unknown"),
            "attempts": attempts,
            "error": error,
            "run_dir": planned["run_dir"],
            "data_source": result.get("data_source"),
            "test_split": config.get("test_split", "held-out"),
            "split_seed": config.get("split_seed", 0),  # which units were held out (--split-seeds)
            "age_input": bool(config.get("age_input", False)),
            "peak_rss_mb": result.get("peak_rss_mb"),
            "peak_gpu_mb": result.get("peak_gpu_mb"),
            "started_at": started_at,
            "finished_at": now_iso(),
        }
    )
    return cast(ResultRecord, record)


class ResultsStore:
    """all_results.json as a list of records keyed by experiment_id, plus a journal.

    Each `upsert` appends the record as one JSON line to JOURNAL (flushed and fsynced: a SIGKILL
    loses nothing) and rewrites all_results.json (atomically, so readers always see whole JSON)
    only when the last rewrite is `min_interval_s` or 20 rewrite-times old: rewriting the whole
    file per completion is quadratic (1,296 records: 77 s, BENCHMARKS.md). `close()` compacts;
    opening replays a journal left by a killed sweep into the file and empties it.
    """

    def __init__(self, output_dir: Path, min_interval_s: float = 2.0):
        self.path = Path(output_dir) / RESULTS
        self.journal = Path(output_dir) / JOURNAL
        self.min_interval_s = min_interval_s
        loaded = read_json(self.path, [])
        self._records = {r["experiment_id"]: r for r in loaded if isinstance(r, dict)}
        replayed = self._replay()
        self._next_compact = 0.0
        if replayed:
            self.compact()

    def _replay(self) -> int:
        n = 0
        for record in read_json_lines(self.journal):
            if "experiment_id" in record:
                self._records[record["experiment_id"]] = record
                n += 1
        return n

    def upsert(self, record: dict) -> None:
        self._records[record["experiment_id"]] = record
        append_json_line(self.journal, record)
        if time.monotonic() >= self._next_compact:
            self.compact()

    def compact(self) -> None:
        """Rewrite all_results.json with every record, then empty the journal."""
        t0 = time.monotonic()
        write_json(self.path, sorted(self._records.values(), key=lambda r: r.get("index", 0)))
        self.journal.unlink(missing_ok=True)
        cost = time.monotonic() - t0
        self._next_compact = time.monotonic() + max(self.min_interval_s, 20 * cost)

    def close(self) -> None:
        if self.journal.exists():
            self.compact()

    def get(self, experiment_id: str) -> dict | None:
        return self._records.get(experiment_id)

    def records(self) -> list[dict]:
        return list(self._records.values())


def write_manifest(
    output_dir: Path,
    *,
    grid: dict,
    planned: list[dict],
    code_version: str,
    data_versions: dict,
    started_at: str,
    finished_at: str | None = None,
    extra: dict | None = None,
) -> None:
    write_json(
        Path(output_dir) / MANIFEST,
        {
            "created_at": started_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "grid": grid,
            "code_version": code_version,
            "data_versions": data_versions,
            "n_experiments": len(planned),
            "seeds": grid.get("seeds"),
            **(extra or {}),
            "experiments": planned,
        },
    )


class SweepLock:
    """An exclusive flock on OUTPUT_DIR/.sweep.lock; the kernel drops it when the holder dies."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK
        self._fh: TextIO | None = None

    def __enter__(self) -> SweepLock:
        self._fh = fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise DDRSAError(
                f"another sweep ({holder}) is writing to {self.path.parent}; wait for it or use another --output-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {now_iso()}")
        fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
