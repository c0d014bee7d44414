"""The result record's shape and its status values are defined once (ddrsa/sweep/results.py
`ResultRecord`, ddrsa/status.py `Status`): what `make_record` writes is exactly the record's
declared keys, and every status a record can carry is one of the declared values."""

from __future__ import annotations

import typing

import pytest

from ddrsa.config import ExperimentConfig
from ddrsa.status import FINISHED, STATUSES, RunStatus, Status
from ddrsa.sweep.results import ResultRecord, make_record


def _planned() -> dict:
    config = ExperimentConfig()
    return {
        "experiment_id": config.experiment_id(),
        "index": 0,
        "name": config.display_name(),
        "run_dir": "logs/x",
        "config": config.model_dump(mode="json"),
    }


@pytest.mark.parametrize("status", STATUSES)
def test_make_record_writes_exactly_the_declared_keys(status):
    record = make_record(_planned(), status=status)
    assert set(record) == set(ResultRecord.__required_keys__)
    assert record["status"] == status


def test_status_values():
    assert set(FINISHED) <= set(STATUSES)
    # a run's statuses that reach a record are record statuses too
    assert set(typing.get_args(RunStatus)) - {"running"} <= set(typing.get_args(Status))
    hints = typing.get_type_hints(ResultRecord)
    assert typing.get_args(hints["status"]) == STATUSES
