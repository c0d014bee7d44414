"""The Custom run form of a deployment: `prefect deploy` of prefect.yaml against a real server, the
deployment's parameters and the parameter schema Prefect built from the flow signature read back."""

from __future__ import annotations

import os
import subprocess
import sys

from deployments.presets import PRESETS, deployment_parameters, preset_spec
from tests.conftest import ROOT


def _array_option(prop: dict) -> dict | None:
    """The `array` alternative of a parameter's JSON schema (`list[...] | None` is an anyOf)."""
    options = prop.get("anyOf", [prop])
    return next((o for o in options if o.get("type") == "array"), None)


def test_deployment_form_shows_the_presets_grid(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.utilities.schema_tools import validate

    from ddrsa.sweep.spec import GRID_AXES

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="ddrsa-local", type="process"), overwrite=True)
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "DDRSA_PROJECT_DIR": str(ROOT), "PYTHONPATH": str(ROOT)}
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run(
        [f"{bindir}/prefect", "--no-prompt", "deploy", "--name", "batch-study", "--name", "cmapss-benchmark"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with get_client(sync_client=True) as client:
        for name in ("batch-study", "cmapss-benchmark"):
            dep = client.read_deployment_by_name(f"ddrsa-sweep/{name}")
            spec = preset_spec(name)
            assert dep.parameters == deployment_parameters(name)
            # every grid axis carries the preset's real values, e.g. batch sizes 32-512 for batch-study
            for axis in GRID_AXES:
                assert dep.parameters[axis] == spec.model_dump(mode="json")[axis], axis
            assert dep.parameters["num_epochs"] == spec.num_epochs
            schema = dep.parameter_openapi_schema
            props = schema["properties"]
            for axis in GRID_AXES:  # the form offers a list editor for each, prefilled above
                assert _array_option(props[axis]) is not None, (axis, props[axis])
            # the constraints reach the form: batch size >= 1, lambda in [0, 1]
            assert _array_option(props["batch_sizes"])["items"]["minimum"] == 1
            assert _array_option(props["lambda_params"])["items"]["maximum"] == 1
            # the values the form shows validate against the schema the server enforces
            assert validate(dep.parameters, schema, raise_on_error=False, preprocess=True) == []
            bad = {**dep.parameters, "batch_sizes": [0]}
            assert validate(bad, schema, raise_on_error=False, preprocess=True) != []
        assert client.read_deployment_by_name("ddrsa-sweep/batch-study").parameters["batch_sizes"] == [
            32,
            64,
            128,
            256,
            512,
        ]
        assert "subset" not in client.read_deployment_by_name("ddrsa-sweep/cmapss-benchmark").parameters
    assert set(PRESETS) >= {"batch-study", "cmapss-benchmark"}
