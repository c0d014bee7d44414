"""`load_dataset(config, settings) -> PreparedData`: source resolution, reading, caching.

Data source = `config.data_source or settings.data_source`:
  real       real files or DataError naming the missing file
  synthetic  seeded generators (`ddrsa.data.synthetic`)
  auto       real when every needed file exists, else synthetic with a loud warning.
For Azure PM the four event files (errors, maint, failures, machines) are required for real data;
PdM_telemetry.csv(.gz) is optional: with it data_source = "real" (18 features), without it
"real-no-telemetry" (the 14 real non-telemetry signals, nothing generated; see `azure_pm`).
Generated data never mixes with real files. A dataset that is a table path (docs/DATA.md) is read
by `fleet_table` and prepared by `fleet`, whatever the data source (data_source "real").
`data_version` = first 16 hex of sha256 over the decompressed raw inputs (or generator name+params;
for a table: its bytes and column settings).
Results are cached in-process (lru_cache) keyed on the data fields of the config plus the settings'
data_dir/data_source; the returned arrays are read-only and shared, copy before modifying.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import warnings
from pathlib import Path

import pandas as pd

from ddrsa.config import DataConfig, is_table_path
from ddrsa.settings import Settings

from . import synthetic
from .azure_pm import prepare_azure
from .cmapss import N_COLUMNS, check_table, prepare_cmapss
from .fleet import prepare_fleet
from .fleet_table import columns_for, read_fleet, yaml_path
from .io import find_file, parse_whitespace_table, read_bytes, read_csv_table
from .windows import PreparedData

log = logging.getLogger(__name__)
SYNTH_CMAPSS = {"n_units": 30, "seed": 0}
SYNTH_AZURE = {"n_machines": 12, "seed": 0}
AZURE_SCHEMAS = {
    "errors": {"datetime": "datetime", "machineID": "int", "errorID": "str"},
    "maint": {"datetime": "datetime", "machineID": "int", "comp": "str"},
    "failures": {"datetime": "datetime", "machineID": "int", "failure": "str"},
    "machines": {"machineID": "int", "model": "str", "age": "float"},
    "telemetry": {
        "datetime": "datetime",
        "machineID": "int",
        "volt": "float",
        "rotate": "float",
        "pressure": "float",
        "vibration": "float",
    },
}


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def _warn_synthetic(what: str, folder: Path, note: str = "") -> str:
    return (
        f"SYNTHETIC DATA: {what} not found in {folder};{note} results are not comparable with "
        f"published numbers (set DDRSA_DATA_DIR or data_source=real)"
    )


# ---------------------------------------------------------------------------------- C-MAPSS
def _cmapss_files(folder: Path, subset: str, required: bool):
    """(train, test, rul) paths; PHM08 train.txt fallback (then test/RUL may be None)."""
    train = find_file(folder, f"train_{subset}.txt", required=False)
    if train is None:
        phm = find_file(folder, "train.txt", required=False)
        if phm is not None:
            log.info("train_%s.txt not found, using PHM08 %s (no benchmark)", subset, phm)
            return phm, None, None
        if required:
            find_file(folder, f"train_{subset}.txt")
        return None, None, None
    test = find_file(folder, f"test_{subset}.txt", required=required)
    rul = find_file(folder, f"RUL_{subset}.txt", required=required)
    if test is None or rul is None:
        return None, None, None
    return train, test, rul


def _load_cmapss(cfg: DataConfig, source: str, data_dir: Path) -> PreparedData:
    folder = data_dir / "cmapss"
    paths = (None, None, None) if source == "synthetic" else _cmapss_files(folder, cfg.subset, source == "real")
    warning = None
    if paths[0] is not None:
        raws = [read_bytes(p) if p is not None else b"" for p in paths]
        train = parse_whitespace_table(raws[0], N_COLUMNS, paths[0])
        check_table(train, paths[0])
        test = rul = None
        if paths[1] is not None:
            test = parse_whitespace_table(raws[1], N_COLUMNS, paths[1])
            check_table(test, paths[1])
            rul = parse_whitespace_table(raws[2], 1, paths[2])[:, 0]
        used, version = "real", _hash(*raws)
    else:
        if source == "auto":
            warning = _warn_synthetic(
                f"C-MAPSS files for {cfg.subset} (train_/test_/RUL_{cfg.subset}.txt[.gz])", folder
            )
        params: dict = dict(SYNTH_CMAPSS, subset=cfg.subset)
        tr, te, ru = synthetic.make_synthetic_cmapss(**params)
        train, test, rul = tr.to_numpy(float), te.to_numpy(float), ru["rul"].to_numpy(float)
        used, version = "synthetic", _hash(json.dumps(["make_synthetic_cmapss", params], sort_keys=True).encode())
    out = prepare_cmapss(
        train,
        test,
        rul,
        cfg.subset,
        cfg.lookback_window,
        cfg.pred_horizon,
        cfg.split_seed,
        cfg.test_fraction,
        cfg.val_fraction,
        cfg.window_stride,
        cfg.max_units,
        test_split=cfg.test_split,
        age_input=cfg.age_input,
    )
    info = {
        "split_units": {k: v.tolist() for k, v in out["split_units"].items()},
        "n_conditions": out["n_conditions"],
        "files": [str(p) for p in paths if p is not None],
        "warning": warning,
    }
    return _prepared(out, used, version, info)


# ---------------------------------------------------------------------------------- Azure PM
def _read_azure(path: Path, name: str) -> tuple[pd.DataFrame, bytes]:
    raw = read_bytes(path)
    return read_csv_table(path, AZURE_SCHEMAS[name]), raw


def _load_azure(cfg: DataConfig, source: str, data_dir: Path) -> PreparedData:
    folder = data_dir / "azure_pm"
    names = ["errors", "maint", "failures", "machines"]
    found = {n: find_file(folder, f"PdM_{n}.csv", required=source == "real") for n in names}
    warning = None
    if source != "synthetic" and all(found[n] is not None for n in names):
        tables, raws = {}, []
        for n in names:
            tables[n], raw = _read_azure(found[n], n)  # type: ignore[arg-type]  # all found (above)
            raws.append(raw)
        telemetry = find_file(folder, "PdM_telemetry.csv", required=False)
        if telemetry is not None:
            tables["telemetry"], raw = _read_azure(telemetry, "telemetry")
            raws.append(raw)
            used = "real"
        else:
            log.info(
                "PdM_telemetry.csv(.gz) not in %s: Azure PM on the real non-telemetry signals only "
                "(errors, time since maintenance, model, age)",
                folder,
            )
            used = "real-no-telemetry"
        version = _hash(*raws)
    else:
        if source == "auto":
            warning = _warn_synthetic("Azure PM files (PdM_errors/maint/failures/machines.csv[.gz])", folder)
        tables = synthetic.make_synthetic_azure(**SYNTH_AZURE)
        used = "synthetic"
        version = _hash(json.dumps(["make_synthetic_azure", SYNTH_AZURE], sort_keys=True).encode())
    out = prepare_azure(
        tables,
        cfg.lookback_window,
        cfg.pred_horizon,
        cfg.split_seed,
        cfg.test_fraction,
        cfg.val_fraction,
        cfg.downsample_hours,
        cfg.window_stride,
        cfg.max_units,
        age_input=cfg.age_input,
    )
    info = {
        "split_units": {k: v.tolist() for k, v in out["split_units"].items()},
        "n_events": out["n_events"],
        "n_event_steps": out["n_event_steps"],
        "warning": warning,
    }
    return _prepared(out, used, version, info)


# ---------------------------------------------------------------------------------- fleet table
def _load_fleet(cfg: DataConfig, source: str, data_dir: Path) -> PreparedData:
    """A user's table (docs/DATA.md): always the file itself, whatever the data source setting."""
    path = Path(cfg.dataset)
    table = read_fleet(path, columns_for(path))
    out = prepare_fleet(
        table,
        cfg.lookback_window,
        cfg.pred_horizon,
        cfg.split_seed,
        cfg.test_fraction,
        cfg.val_fraction,
        cfg.window_stride,
        cfg.max_units,
    )
    info = {
        "split_units": {k: v.tolist() for k, v in out["split_units"].items()},
        "files": [str(path)],
        "n_events": int(sum(len(e) for e in table.event_steps)),
        "warning": None,
        "scaler": out["scaler"].to_dict(),
        "categories": table.categories,
        "columns": columns_for(path).as_dict(),
        "dropped": dict(
            table.dropped, **{c: "constant or missing on the training units" for c in out["scaler"].dropped}
        ),
    }
    return _prepared(out, "real", table.version, info)


def _prepared(out: dict, used: str, version: str, info: dict) -> PreparedData:
    return PreparedData(
        train=out["train"],
        val=out["val"],
        test=out["test"],
        benchmark=out["benchmark"],
        feature_names=out["feature_names"],
        data_source=used,
        data_version=version,
        n_units={k: len(out["split_units"][k]) for k in ("train", "val", "test")},
        info=info,
    )


# ---------------------------------------------------------------------------------- entry point
def _fingerprint(folder: Path) -> tuple:
    """(name, size, mtime) of the files in `folder`, so edited files invalidate the cache."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


@functools.lru_cache(maxsize=8)
def _load_cached(cfg_json: str, data_dir: str, source: str, fingerprint: tuple) -> PreparedData:
    cfg = DataConfig.model_validate_json(cfg_json)
    loader = _load_fleet if is_table_path(cfg.dataset) else _load_cmapss if cfg.dataset == "turbofan" else _load_azure
    return loader(cfg, source, Path(data_dir))


def load_dataset(config, settings: Settings | None = None) -> PreparedData:
    """Load, split, scale and window the data set named by `config` (DataConfig or ExperimentConfig).

    Returns a cached, shared PreparedData (read-only arrays). Raises DataError for missing/malformed
    files when the source is `real` (and for malformed files under `auto`)."""
    settings = settings if settings is not None else Settings()
    cfg = DataConfig(**{k: getattr(config, k) for k in DataConfig.model_fields})
    source = cfg.data_source or settings.data_source
    data_dir = Path(settings.data_dir).resolve()
    if is_table_path(cfg.dataset):
        fp = tuple(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (str(p),)
            for p in (Path(cfg.dataset), yaml_path(cfg.dataset))
        )
    else:
        sub = data_dir / ("cmapss" if cfg.dataset == "turbofan" else "azure_pm")
        fp = () if source == "synthetic" else _fingerprint(sub)
    data = _load_cached(cfg.model_dump_json(), str(data_dir), source, fp)
    if data.info.get("warning"):  # every call, also on cache hits
        warnings.warn(data.info["warning"], UserWarning, stacklevel=2)
        log.warning(data.info["warning"])
    return data


def clear_cache() -> None:
    _load_cached.cache_clear()
