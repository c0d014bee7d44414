"""Write C-MAPSS training units as a fleet table (docs/DATA.md):

    python benchmarks/cmapss_to_fleet.py --subset FD001 --output /tmp/fd001.parquet   # or .csv / .csv.gz

Columns: unit, time (the cycle), event (1 on each unit's last cycle: C-MAPSS training units run to
failure), then the sensors. By default only the 14 sensors the built-in `turbofan` loader keeps
(settings are not features there, and its near-constant sensors have std < 0.025 raw units, a rule
a generic table cannot know): `--dataset /tmp/fd001.parquet` then gives the same windows as
`--dataset turbofan --subset FD001` (tests/test_fleet_cmapss.py). `--all-columns` writes the three
settings and all 21 sensors instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddrsa.data.cmapss import N_COLUMNS, SENSOR_NAMES
from ddrsa.data.io import find_file, read_whitespace_table
from ddrsa.settings import get_settings

KEPT_SENSORS = (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)


def cmapss_fleet_frame(rows: np.ndarray, all_columns: bool = False) -> pd.DataFrame:
    """Raw (n, 26) C-MAPSS rows -> fleet-table DataFrame (unit, time, event, covariates)."""
    unit, cycle = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    last = pd.Series(cycle).groupby(unit).transform("max").to_numpy()
    df = pd.DataFrame({"unit": unit, "time": cycle, "event": (cycle == last).astype(np.int64)})
    if all_columns:
        for i in range(3):
            df[f"setting_{i + 1}"] = rows[:, 2 + i]
    for j, name in enumerate(SENSOR_NAMES):
        if all_columns or (j + 1) in KEPT_SENSORS:
            df[name] = rows[:, 5 + j]
    return df


def write_table(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.name.endswith((".parquet", ".pq")):
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False, float_format="%.17g", compression="gzip" if out.name.endswith(".gz") else None)
    tmp.replace(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subset", default="FD001", choices=["FD001", "FD002", "FD003", "FD004"])
    p.add_argument("--output", required=True, help="the table to write (.csv, .csv.gz, .parquet)")
    p.add_argument("--all-columns", action="store_true", help="settings and all 21 sensors")
    args = p.parse_args(argv)
    src = find_file(Path(get_settings().data_dir) / "cmapss", f"train_{args.subset}.txt")
    df = cmapss_fleet_frame(read_whitespace_table(src, N_COLUMNS), args.all_columns)
    write_table(df, Path(args.output))
    print(f"{args.output}: {len(df)} rows, {df['unit'].nunique()} units, {len(df.columns) - 3} covariates from {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
