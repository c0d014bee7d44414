"""One definition of the sweep's parameters (issue 14): SweepSpec + SweepOptions give the command
line of flows/sweep.py, the flow's parameter schema (what the Prefect UI's custom-run form shows and
the server validates), the launcher's fields and the presets."""

from __future__ import annotations

import pytest

from ddrsa.sweep.spec import GRID_AXES, SweepSpec
from deployments.presets import PRESETS
from flows.options import FLOW_FIELDS, SPEC_FIELDS, SweepOptions, flag
from flows.sweep_cli import build_parser, cli_args


def _all_fields() -> dict:
    return {**SweepSpec.model_fields, **SweepOptions.model_fields}


def test_every_field_has_a_flag_with_its_description():
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for name, info in _all_fields().items():
        assert info.description, f"{name} has no description"
        assert name in actions, f"no command-line flag for {name}"
        assert flag(name) in actions[name].option_strings
        assert actions[name].help == info.description
    # the flags the project has always had keep their spelling
    for spelled in (
        "--no-amp",
        "--no-analysis",
        "--compile",
        "--deterministic",
        "--fresh",
        "--batch-sizes",
        "--experiment-timeout",
        "--gpus-per-experiment",
        "--append-to-history",
    ):
        assert spelled in parser._option_string_actions
    assert set(SPEC_FIELDS) == set(SweepSpec.model_fields) and set(FLOW_FIELDS) == set(SweepOptions.model_fields)


def test_cli_args_round_trip():
    """Flow parameters -> flags (the launcher's local command) -> parsed back: the same values."""
    params = {
        "preset": "nightly",
        "datasets": ["turbofan"],
        "models": ["paper", "gru_basic"],
        "batch_sizes": [32, 64],
        "lambda_params": [0.5],
        "num_epochs": 3,
        "subsets": ["FD001", "FD003"],
        "test_split": "official",
        "amp": False,
        "compile": True,
        "deterministic": False,
        "fresh": True,
        "run_analysis": False,
        "append_to_history": True,
        "n_workers": 2,
        "experiment_timeout": 30.0,
        "gpus_per_experiment": 0.5,
        "output_dir": "o",
    }
    parsed = vars(build_parser().parse_args(cli_args(params)))
    for name, value in params.items():
        if name == "deterministic":
            assert parsed[name] is None  # False = the default: no flag, the preset's value
        else:
            assert parsed[name] == value, name


def test_presets_are_partial_specs():
    for name, preset in PRESETS.items():
        assert set(preset["spec"]) <= set(SweepSpec.model_fields), name
        SweepSpec(**preset["spec"])


def test_flow_parameter_schema_from_the_models():
    from flows.sweep import ddrsa_sweep

    schema = ddrsa_sweep.parameters.model_dump_for_openapi()
    props = schema["properties"]
    assert list(props) == list(SPEC_FIELDS) + list(FLOW_FIELDS)
    for name, info in _all_fields().items():
        assert props[name]["description"].startswith(" ".join(info.description.split())), name
    assert not schema.get("required")  # every parameter has a default (None: the preset's value)
    lam = props["lambda_params"]["anyOf"][0]
    assert lam["type"] == "array" and lam["items"] == {"maximum": 1, "minimum": 0, "type": "number"}
    assert {"minimum": 1, "type": "integer"} in props["n_workers"]["anyOf"]
    assert props["gpus_per_experiment"]["exclusiveMinimum"] == 0 and props["gpus_per_experiment"]["maximum"] == 1
    assert props["test_split"]["anyOf"][0]["enum"] == ["held-out", "official"]


def test_deployment_schema_on_a_real_server_carries_descriptions_and_validates(prefect_server):
    """What the UI's custom-run form reads: the deployment's parameter_openapi_schema, stored by a
    real Prefect server; the server refuses a run whose parameters break a constraint."""
    from prefect.client.orchestration import get_client

    from deployments.serve import build_deployments

    (dep,) = build_deployments(["batch-study"])
    dep.name = "params-schema-test"
    deployment_id = dep.apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
        props = stored.parameter_openapi_schema["properties"]
        assert props["learning_rates"]["description"].startswith("Adam learning rates")
        assert props["experiment_timeout"]["description"].startswith("fail an experiment still running")
        assert stored.enforce_parameter_schema
        ok = client.create_flow_run_from_deployment(deployment_id, parameters={"num_epochs": 2})
        assert ok.parameters["num_epochs"] == 2
        with pytest.raises(Exception, match="lambda_params|less than or equal"):
            client.create_flow_run_from_deployment(deployment_id, parameters={"lambda_params": [1.5]})
        for run in (ok,):
            client.delete_flow_run(run.id)
        client.delete_deployment(deployment_id)


def test_grid_axes_are_spec_fields():
    assert set(GRID_AXES) <= set(SweepSpec.model_fields)
