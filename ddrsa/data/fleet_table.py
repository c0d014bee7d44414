"""Reading and validating a fleet table (docs/DATA.md): one row per unit and time step.

`read_fleet(path, columns) -> FleetTable`: the raw covariates of every unit on its regular step grid
(NaN where missing), its event steps and the encoding of its covariates. Every problem with the file
is a one-line `DataError` (the command lines turn it into exit code 2); nothing is written.

Rules (the numbers are the constants below):
  - required columns `unit`, `time`, `event` (names configurable: `FleetColumns`, flags or a YAML
    next to the file); every other column is a covariate.
  - time: integer steps, or timestamps with `time_step` (e.g. "15h"): step = floor((t - t0) / step)
    with t0 the unit's first timestamp; rows sharing one step are averaged (event: any).
  - a step missing inside a unit's range is a row of missing covariates (event 0).
  - event: 0 or 1, 1 on the step a failure happened. Each failure ends a segment; a unit whose last
    rows follow its last failure is right-censored at its last step.
  - covariates: numeric (bool counts as 0/1; +-inf counts as missing), or categorical with at most
    MAX_CATEGORIES distinct values (one-hot: columns `name=value`, values sorted); a non-numeric
    column with more distinct values is an error.
  - missing values: a covariate missing everywhere is dropped; one missing (or infinite) in more than
    MAX_MISSING_SHARE of the steps is an error. The rest are imputed by `ddrsa.data.fleet` (last
    observed value of the unit, else the training units' median).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ddrsa.config import dataset_name
from ddrsa.errors import DataError

from .io import read_bytes

MAX_CATEGORIES = 20
MAX_MISSING_SHARE = 0.5
MAX_GRID_GROWTH = 10  # step grid at most this many times the rows (a too small time_step)
YAML_KEYS = ("unit_column", "time_column", "event_column", "time_step", "max_categories")


def yaml_path(path) -> Path:
    """The optional column settings next to the table: `pumps.csv.gz` -> `pumps.yaml`."""
    return Path(path).with_name(dataset_name(str(path)) + ".yaml")


@dataclass(frozen=True)
class FleetColumns:
    """How to read a table: the three required column names, the step size for timestamps
    (pandas offset such as "15h", "1D"; None for integer steps) and the one-hot limit."""

    unit_column: str = "unit"
    time_column: str = "time"
    event_column: str = "event"
    time_step: str | None = None
    max_categories: int = MAX_CATEGORIES

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in YAML_KEYS}


def columns_for(path, **flags) -> FleetColumns:
    """FleetColumns from the YAML next to `path` (if any), with the non-None `flags` on top."""
    import yaml

    cols = FleetColumns()
    side = yaml_path(path)
    if side.is_file():
        try:
            doc = yaml.safe_load(side.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DataError(f"{side}: unreadable YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict) or set(doc) - set(YAML_KEYS):
            extra = sorted(set(doc) - set(YAML_KEYS)) if isinstance(doc, dict) else doc
            raise DataError(f"{side}: unknown key(s) {extra}; allowed: {', '.join(YAML_KEYS)}")
        cols = replace(cols, **doc)
    cols = replace(cols, **{k: v for k, v in flags.items() if v is not None})
    if not isinstance(cols.max_categories, int) or cols.max_categories < 1:
        raise DataError(f"max_categories must be a positive integer, got {cols.max_categories!r}")
    return cols


@dataclass
class FleetTable:
    """A validated table. Per unit u (in `unit_ids` order): `steps[u]` float64 (T_u, C) raw encoded
    covariates (NaN = missing), `event_steps[u]` int64 sorted steps holding a failure."""

    name: str
    version: str  # 16 hex of sha256 over the file bytes and the column settings
    unit_ids: np.ndarray  # int64 (U,): the unit labels when they are integers, else 1..U
    unit_labels: list  # (U,) the labels as written in the file
    last_time: list  # (U,) the time value of each unit's last row, as in the file
    steps: list  # U x float64 (T_u, C)
    event_steps: list  # U x int64 (E_u,)
    covariates: list[str]  # C encoded covariate names (`col` or `col=value`)
    categories: dict = field(default_factory=dict)  # categorical column -> sorted values
    dropped: dict = field(default_factory=dict)  # covariate -> reason ("all missing")
    n_rows: int = 0
    missing_share: float = 0.0  # share of missing cells among the kept covariates on the grid


def _read_frame(path: Path) -> tuple[pd.DataFrame, bytes]:
    if not path.is_file():
        raise DataError(f"cannot read {path}: no such file")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            raw = path.read_bytes()
            df = pd.read_parquet(io.BytesIO(raw))
        except ImportError as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"cannot read {path}: not a Parquet file ({type(exc).__name__})") from None
        return df, raw
    raw = read_bytes(path)
    try:
        df = pd.read_csv(io.BytesIO(raw), skipinitialspace=True, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: malformed CSV: {msg}") from None
    return df, raw


def _step_index(path: Path, df: pd.DataFrame, cols: FleetColumns, order_in_unit) -> np.ndarray:
    """int64 (n,) step of each row counted from its unit's first row."""
    t = df[cols.time_column]
    if cols.time_step is None:
        num = pd.to_numeric(t, errors="coerce")
        bad = num.isna() | (num != num.round())
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: row {i + 1}, column {cols.time_column}: '{t.iloc[i]}' is not an integer "
                "step (timestamps need a time_step, e.g. --time-step 1h)"
            )
        steps = num.to_numpy(np.int64)
        return steps - order_in_unit(steps).transform("min").to_numpy(np.int64)
    try:
        step = pd.Timedelta(cols.time_step)
    except ValueError:
        raise DataError(f"time_step {cols.time_step!r} is not a duration such as 15h or 1D") from None
    if step <= pd.Timedelta(0):
        raise DataError(f"time_step must be positive, got {cols.time_step!r}")
    ts = pd.to_datetime(t, errors="coerce", format="mixed")
    if ts.isna().any():
        i = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise DataError(f"{path}: row {i + 1}, column {cols.time_column}: '{t.iloc[i]}' is not a timestamp")
    t0 = order_in_unit(ts).transform("min")
    return ((ts - t0) // step).to_numpy(np.int64)


def _encode(
    path: Path, df: pd.DataFrame, names: list[str], limit: int, categories: dict | None
) -> tuple[pd.DataFrame, dict]:
    """Covariate columns -> numeric frame (categoricals one-hot) and {column: sorted values}.
    `categories` (from a model package) fixes the encoding instead of reading it from the data."""
    out, cats = {}, {}
    for c in names:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype(float)
        known = categories.get(c) if categories else None
        num = pd.to_numeric(col, errors="coerce") if known is None else None
        if num is not None and not (num.isna() & col.notna()).any():
            out[c] = num.astype(float).replace([np.inf, -np.inf], np.nan)
            continue
        text = col.astype(str).str.strip().where(col.notna())
        values = sorted(text.dropna().unique()) if known is None else list(known)
        if known is None and len(values) > limit:
            assert num is not None  # computed whenever no known categories are given
            bad = num.isna() & col.notna()
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: covariate {c!r} is not numeric (row {i + 1}: '{col.iloc[i]}') and has "
                f"{len(values)} distinct values, more than the one-hot limit {limit} "
                "(max_categories)"
            )
        if known is not None:
            unseen = sorted(set(text.dropna().unique()) - set(known))
            if unseen:
                raise DataError(
                    f"{path}: covariates do not match the package: {c!r} has value(s) "
                    f"{', '.join(map(repr, unseen[:3]))} it was not trained on (known: {', '.join(known)})"
                )
        cats[c] = values
        for v in values:
            out[f"{c}={v}"] = (text == v).astype(float).where(text.notna())
    return pd.DataFrame(out, index=df.index), cats


def read_fleet(
    path, columns: FleetColumns | None = None, *, categories: dict | None = None, require_failure: bool = True
) -> FleetTable:
    """Read and validate the table at `path` (see the module docstring). `require_failure` False
    (scoring) accepts a table without any failure; `categories` fixes the one-hot encoding."""
    path = Path(path)
    cols = columns or columns_for(path)
    df, raw = _read_frame(path)
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    required = [cols.unit_column, cols.time_column, cols.event_column]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(missing)} (found: "
            f"{', '.join(df.columns[:12])}{', ...' if len(df.columns) > 12 else ''}; "
            "name them with --unit-column/--time-column/--event-column or a YAML next to the file)"
        )
    for c in required:
        if df[c].isna().any():
            i = int(np.flatnonzero(df[c].isna().to_numpy())[0])
            raise DataError(f"{path}: row {i + 1}: missing value in required column {c}")
    ev = pd.to_numeric(df[cols.event_column], errors="coerce")
    bad = ~ev.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: row {i + 1}, column {cols.event_column}: '{df[cols.event_column].iloc[i]}' "
            "is not 0 or 1 (1 on the step a failure happened)"
        )
    unit = df[cols.unit_column]
    by_unit = lambda s: pd.Series(s, index=df.index).groupby(unit.to_numpy(), sort=False)
    dup = df.duplicated([cols.unit_column, cols.time_column])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"{path}: row {i + 1}: duplicate (unit, time) = ('{unit.iloc[i]}', '{df[cols.time_column].iloc[i]}')"
        )
    step = _step_index(path, df, cols, by_unit)
    # time must increase within each unit in file order (rows of different units may interleave)
    back = by_unit(step).diff().to_numpy() < 0
    if back.any():
        i = int(np.flatnonzero(back)[0])
        raise DataError(
            f"{path}: row {i + 1}: time goes backwards inside unit '{unit.iloc[i]}' "
            f"('{df[cols.time_column].iloc[i]}' after a later time)"
        )
    names = [c for c in df.columns if c not in required]
    enc, cats = _encode(path, df, names, cols.max_categories, categories)
    version = hashlib.sha256(hashlib.sha256(raw).digest() + repr(sorted(cols.as_dict().items())).encode()).hexdigest()[
        :16
    ]
    return _assemble(path, df, cols, unit, step, ev.to_numpy().astype(bool), enc, cats, version, require_failure)


def _assemble(path, df, cols, unit, step, event, enc, cats, version, require_failure) -> FleetTable:
    """Per-unit step grids, missing-value checks and the unit ids."""
    if require_failure and not event.any():
        raise DataError(
            f"{path}: no failure at all (column {cols.event_column} is never 1): nothing to learn time to failure from"
        )
    n_grid = int(pd.Series(step).groupby(unit.to_numpy(), sort=False).max().sum()) + unit.nunique()
    if n_grid > MAX_GRID_GROWTH * len(df):
        raise DataError(
            f"{path}: the step grid would hold {n_grid} steps for {len(df)} rows: time_step "
            f"{cols.time_step or 1} is too small for these times"
        )
    labels = list(pd.unique(unit))
    try:
        as_int = [int(u) for u in labels]
        integer = all(float(u) == i for u, i in zip(labels, as_int))
    except (TypeError, ValueError):
        integer = False
    order = sorted(range(len(labels)), key=(lambda i: as_int[i]) if integer else (lambda i: str(labels[i])))
    labels = [labels[i] for i in order]
    ids = np.array([as_int[i] for i in order] if integer else np.arange(1, len(labels) + 1), np.int64)
    frame = enc.assign(_unit=unit.to_numpy(), _step=step, _event=event.astype(float))
    grouped = dict(tuple(frame.groupby("_unit", sort=False)))
    steps, event_steps, last_time = [], [], []
    last_row = df.groupby(cols.unit_column, sort=False)[cols.time_column].last()
    for lab in labels:
        g = grouped[lab].drop(columns="_unit").groupby("_step").mean()  # rows in one step averaged
        n = int(g.index.max()) + 1
        g = g.reindex(range(n))
        steps.append(g[list(enc.columns)].to_numpy(np.float64))
        event_steps.append(np.flatnonzero(g["_event"].fillna(0).to_numpy() > 0).astype(np.int64))
        last_time.append(last_row[lab])
    table = FleetTable(
        name=dataset_name(str(path)),
        version=version,
        unit_ids=ids,
        unit_labels=labels,
        last_time=last_time,
        steps=steps,
        event_steps=event_steps,
        covariates=list(enc.columns),
        categories=cats,
        n_rows=len(df),
    )
    return _check_missing(path, table)


def _check_missing(path, table: FleetTable) -> FleetTable:
    """Drop all-missing covariates; refuse one missing beyond MAX_MISSING_SHARE."""
    allx = np.concatenate(table.steps) if table.steps else np.zeros((0, len(table.covariates)))
    share = np.isnan(allx).mean(0) if len(allx) else np.zeros(len(table.covariates))
    keep = []
    for j, name in enumerate(table.covariates):
        if share[j] == 1.0:
            table.dropped[name] = "all missing"
        elif share[j] > MAX_MISSING_SHARE:
            raise DataError(
                f"{path}: covariate {name!r} is missing or infinite on {share[j]:.0%} of the steps "
                f"(limit {MAX_MISSING_SHARE:.0%}); fill it or drop the column"
            )
        else:
            keep.append(j)
    if not keep:
        raise DataError(f"{path}: no usable covariate (every column besides unit, time and event is missing)")
    table.steps = [s[:, keep] for s in table.steps]
    table.covariates = [table.covariates[j] for j in keep]
    table.missing_share = float(share[keep].mean()) if len(allx) else 0.0
    return table
