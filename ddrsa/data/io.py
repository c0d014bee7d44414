"""Reading raw data files (plain or .gz) with one-line `DataError`s naming file and line."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ddrsa.errors import DataError

HINT = "set DDRSA_DATA_DIR to the folder holding cmapss/ and azure_pm/"


def find_file(folder: Path, name: str, required: bool = True) -> Path | None:
    """`folder/name`, else `folder/name.gz`; DataError (or None) when neither exists."""
    folder = Path(folder)
    for cand in (folder / name, folder / (name + ".gz")):
        if cand.is_file():
            return cand
    if required:
        raise DataError(f"missing data file {name} (or {name}.gz): put it in {folder}/ ({HINT})")
    return None


def read_bytes(path: Path) -> bytes:
    """File content, gunzipped when the name ends in .gz."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def parse_whitespace_table(text: bytes, ncols: int, path) -> np.ndarray:
    """float64 (n, ncols) from whitespace-separated numeric text (blank lines ignored).
    DataError naming file and 1-based line for a wrong field count or a non-numeric value."""
    s = text.decode("utf-8", errors="replace")
    tokens = s.split()
    lines = s.splitlines()
    n_nonblank = sum(1 for ln in lines if ln.strip())
    if len(tokens) != n_nonblank * ncols:
        for i, ln in enumerate(lines, 1):
            nf = len(ln.split())
            if nf and nf != ncols:
                last = " (truncated last line?)" if i == len(lines) or not any(x.strip() for x in lines[i:]) else ""
                raise DataError(f"{path}: line {i} has {nf} fields, expected {ncols}{last}")
    try:
        arr = np.array(tokens, dtype=np.float64)
    except ValueError:
        arr = None
    if arr is None or not np.isfinite(arr).all():
        for i, ln in enumerate(lines, 1):
            for tok in ln.split():
                try:
                    ok = np.isfinite(float(tok))
                except ValueError:
                    ok = False
                if not ok:
                    raise DataError(f"{path}: line {i}: non-numeric value {tok!r}")
    assert arr is not None  # every token parsed (a bad one raised above)
    return arr.reshape(-1, ncols)


def read_whitespace_table(path: Path, ncols: int) -> np.ndarray:
    return parse_whitespace_table(read_bytes(path), ncols, path)


def read_csv_table(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """CSV with a header; `columns` maps required column -> kind ("datetime", "int", "float", "str").
    Returns only those columns, converted. DataError naming file, column and line on problems."""
    raw = read_bytes(path)
    try:
        df = pd.read_csv(
            io.BytesIO(raw), skipinitialspace=True, keep_default_na=False, na_values=[""], low_memory=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: malformed CSV: {msg}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns)})")
    out = {}
    for col, kind in columns.items():
        col_vals = df[col]
        if kind == "datetime":
            try:
                conv = pd.to_datetime(col_vals, format="%Y-%m-%d %H:%M:%S", errors="raise")
            except (ValueError, TypeError):
                conv = pd.to_datetime(col_vals, errors="coerce", format="mixed")
        elif kind in ("int", "float"):
            conv = col_vals if pd.api.types.is_numeric_dtype(col_vals) else pd.to_numeric(col_vals, errors="coerce")
        else:
            conv = col_vals.astype(str).str.strip()
            conv[col_vals.isna()] = np.nan
        bad = conv.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            v = col_vals.iloc[i]
            kind_word = "date" if kind == "datetime" else "numeric"
            what = (
                "missing value (truncated line?)"
                if pd.isna(v) or str(v).strip() == ""
                else f"non-{kind_word} value {str(v).strip()!r}"
            )
            raise DataError(f"{path}: line {i + 2}, column {col}: {what}")
        if kind == "int":
            if not (conv == conv.round()).all():
                i = int(np.flatnonzero((conv != conv.round()).to_numpy())[0])
                raise DataError(f"{path}: line {i + 2}, column {col}: not an integer {col_vals.iloc[i]!r}")
            conv = conv.astype(np.int64)
        out[col] = conv.to_numpy()
    return pd.DataFrame(out)
