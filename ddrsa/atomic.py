"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _replace_with(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
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


def torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and os.replace."""
    import torch

    _replace_with(Path(path), lambda fh: torch.save(obj, fh), "wb")
