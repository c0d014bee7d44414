"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _replace_with(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:  # type: ignore[call-overload]
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats by None so the file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (NaN -> null) atomically."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    _replace_with(Path(path), lambda fh: fh.write(text + "\n"), "w")


def write_data(path: Path, data: str | bytes) -> Path:
    """Write text or bytes atomically; returns the path."""
    _replace_with(Path(path), lambda fh: fh.write(data), "wb" if isinstance(data, bytes) else "w")
    return Path(path)


def read_json(path: Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    with open(path) as fh:
        return json.load(fh)


def append_json_line(path: Path, obj: Any) -> None:
    """Append `obj` to the JSON-lines file `path` as one line, flushed and fsynced: a SIGKILL loses
    at most this line. A last line torn by an earlier kill is ended first, so this one stays whole."""
    line = json.dumps(json_safe(obj), allow_nan=False) + "\n"
    with open(path, "a+b") as fh:
        torn = False
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        fh.write((("\n" + line) if torn else line).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_json_lines(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, one per line ([] when it is absent); a line torn by a
    kill mid-append, or one that is not an object, is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and os.replace."""
    import torch

    _replace_with(Path(path), lambda fh: torch.save(obj, fh), "wb")
