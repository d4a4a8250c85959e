"""prefect.yaml: every deployment's entrypoint loads, and its parameters make a usable UI form."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from leadflow.settings import PROJECT_ROOT


def load_deployments() -> dict[str, dict]:
    document = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    return {deployment["name"]: deployment for deployment in document["deployments"]}


def test_trial_invite_deployment_loads() -> None:
    deployment = load_deployments()["trial-invite"]
    entrypoint = str(PROJECT_ROOT / deployment["entrypoint"])

    flow = load_flow_from_entrypoint(entrypoint)

    assert flow.name == "trial-invite"
    assert deployment["enforce_parameter_schema"] is True


def test_trial_invite_form_fields() -> None:
    flow = load_flow_from_entrypoint(str(PROJECT_ROOT / load_deployments()["trial-invite"]["entrypoint"]))

    schema = parameter_schema(flow.fn).model_dump()

    assert schema["required"] == ["name"]
    assert set(schema["properties"]) == {"name", "limit", "dry_run", "senders"}
    assert schema["properties"]["name"]["pattern"]
    assert schema["properties"]["limit"]["anyOf"][0]["minimum"] == 1
    assert schema["properties"]["senders"]["default"] == 0
    assert schema["properties"]["senders"]["minimum"] == 0
    assert all(field.get("description") for field in schema["properties"].values())


def test_campaign_sender_deployment_loads() -> None:
    deployment = load_deployments()["campaign-sender"]

    flow = load_flow_from_entrypoint(str(PROJECT_ROOT / deployment["entrypoint"]))
    schema = parameter_schema(flow.fn).model_dump()

    assert flow.name == "campaign-sender"
    assert deployment["work_pool"]["work_queue_name"] == "senders"
    assert "schedules" not in deployment
    assert schema["required"] == ["name"]
    assert set(schema["properties"]) == {"name", "sender"}


def test_no_secrets_in_prefect_yaml() -> None:
    text = Path(PROJECT_ROOT / "prefect.yaml").read_text()

    for name in ("LEADFLOW_SECRET_KEY:", "LEADFLOW_SMTP_URL:", "password"):
        assert name not in text
