"""Asynchronous successive halving (ASHA, Li et al. 2020) over a finite list of configurations.

Pure logic, no Prefect or training: the flow asks `next_job()` for work, trains, and reports each
rung result with `apply(result_event(...))`. Every decision is an *event* (a small dict) that the
flow appends to OUTPUT_DIR/search_decisions.jsonl (`DecisionLog`) before acting on it; a killed
sweep replays that file into a fresh `Asha` and goes on with the same search.

Rungs are epoch budgets r, r*eta, r*eta^2, ... capped by the maximum (which is always the last
rung). A configuration is promoted from rung k as soon as it is among the best floor(n_k / eta) of
the n_k results seen at rung k (ranked on validation loss, never test metrics; ties by grid order),
so no worker waits at a rung barrier. Work order: the highest promotable rung first, then a new
configuration at rung 0 in grid order.

Events (all JSON-able):
  {"event": "start", "id", "rung": 0}             a configuration begins at the first rung
  {"event": "promote", "id", "rung": k+1}         it continues (from its checkpoint) to rung k+1
  {"event": "result", "id", "rung", "epochs", "val_loss", "final"}
        `final`: the run cannot go on (completed by early stopping or the last rung, diverged or
        failed); `val_loss` None counts as worst.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ddrsa.atomic import append_json_line, read_json_lines

DECISIONS = "search_decisions.jsonl"


def rung_epochs(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """[r, r*eta, r*eta^2, ...] below max_epochs, then max_epochs: e.g. (1, 20, 3) -> [1, 3, 9, 20]."""
    if eta < 2:
        raise ValueError(f"reduction factor must be at least 2, got {eta}")
    if not 1 <= min_epochs <= max_epochs:
        raise ValueError(f"min epochs must be in 1..{max_epochs}, got {min_epochs}")
    out, e = [], min_epochs
    while e < max_epochs:
        out.append(e)
        e *= eta
    return out + [max_epochs]


def _loss(value) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else math.inf


@dataclass
class Asha:
    """ASHA state over `ids` (grid order) with rung budgets `rungs` (epochs) and factor `eta`."""

    ids: list[str]
    rungs: list[int]
    eta: int
    started: list[str] = field(default_factory=list)
    target: dict[str, int] = field(default_factory=dict)  # id -> rung it is training towards
    results: list[dict[str, dict]] = field(default_factory=list)  # rung -> {id: result event}
    promoted: list[set[str]] = field(default_factory=list)  # rung -> ids promoted out of it

    def __post_init__(self) -> None:
        self._order = {cid: i for i, cid in enumerate(self.ids)}
        self.results = [dict() for _ in self.rungs]
        self.promoted = [set() for _ in self.rungs]

    # ------------------------------------------------------------------ state changes
    def apply(self, event: dict) -> None:
        """Apply one event (live or replayed from the decision log)."""
        cid, rung = event["id"], int(event["rung"])
        kind = event["event"]
        if kind == "start":
            if cid not in self.started:
                self.started.append(cid)
            self.target.pop(cid, None)  # re-inserted last: `target` keeps decision order
            self.target[cid] = rung
        elif kind == "promote":
            self.promoted[rung - 1].add(cid)
            self.target.pop(cid, None)
            self.target[cid] = rung
        elif kind == "result":
            self.results[rung][cid] = event
        else:
            raise ValueError(f"unknown search event {kind!r}")

    # ------------------------------------------------------------------ queries
    def pending(self) -> list[tuple[str, int]]:
        """(id, rung) started or promoted without a result at that rung yet: in flight, in
        decision order (after a kill, exactly the jobs to submit again)."""
        return [(cid, r) for cid, r in self.target.items() if cid not in self.results[r]]

    def top(self, rung: int) -> list[str]:
        """The ids in the best floor(n / eta) of the n results at `rung`."""
        ranked = sorted(self.results[rung].values(), key=lambda e: (_loss(e["val_loss"]), self._order[e["id"]]))
        return [e["id"] for e in ranked[: len(ranked) // self.eta]]

    def next_job(self) -> dict | None:
        """The next decision (a start or promote event, not yet applied), or None when there is
        nothing to start now (either everything is decided, or only in-flight runs can add results)."""
        for rung in range(len(self.rungs) - 2, -1, -1):
            for cid in self.top(rung):
                result = self.results[rung][cid]
                if (
                    cid not in self.promoted[rung]
                    and not result.get("final")
                    and math.isfinite(_loss(result["val_loss"]))
                ):
                    return {"event": "promote", "id": cid, "rung": rung + 1}
        for cid in self.ids:
            if cid not in self.target:
                return {"event": "start", "id": cid, "rung": 0}
        return None

    def finished(self) -> bool:
        return not self.pending() and self.next_job() is None

    def last_result(self, cid: str) -> dict | None:
        """The result event of the highest rung `cid` reached, or None."""
        for rung in range(len(self.rungs) - 1, -1, -1):
            if cid in self.results[rung]:
                return self.results[rung][cid]
        return None

    def outcome(self, cid: str) -> dict:
        """What the search did with `cid`: rung reached (index), epochs, promoted (out of its last
        rung: False for a configuration stopped there), and whether it ran to the end."""
        last = self.last_result(cid)
        if last is None:
            return {"rung": None, "epochs": 0, "promoted": False, "stopped_early": False}
        rung = int(last["rung"])
        promoted_ever = any(cid in p for p in self.promoted)
        stopped = not last.get("final") and rung < len(self.rungs) - 1
        return {"rung": rung, "epochs": int(last["epochs"]), "promoted": promoted_ever, "stopped_early": stopped}

    def total_epochs(self) -> int:
        """Epochs trained by the search so far (each configuration's last result)."""
        return sum(self.outcome(cid)["epochs"] for cid in self.started)


def result_event(cid: str, rung: int, epochs: int, val_loss: float | None, final: bool) -> dict:
    v = None if val_loss is None or not math.isfinite(float(val_loss)) else float(val_loss)
    return {"event": "result", "id": cid, "rung": int(rung), "epochs": int(epochs), "val_loss": v, "final": bool(final)}


class DecisionLog:
    """OUTPUT_DIR/search_decisions.jsonl: one JSON event per line, appended, flushed and fsynced
    before the flow acts on it, so a SIGKILL loses at most a torn last line (ignored on read).
    The first line is a header ({"event": "header", ...}) naming the search; a resume with other
    settings is refused by the caller."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / DECISIONS

    def read(self) -> list[dict]:
        return [event for event in read_json_lines(self.path) if "event" in event]

    def append(self, event: dict) -> None:
        append_json_line(self.path, event)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


def replay(asha: Asha, events: list[dict]) -> int:
    """Apply every non-header event of a decision log; returns how many were applied."""
    n = 0
    for event in events:
        if event["event"] != "header":
            asha.apply(event)
            n += 1
    return n
