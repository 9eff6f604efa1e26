"""The Kubernetes manifests (deploy/kubernetes/) validate offline against the Kubernetes
schemas, and say what the HA layout needs: two or more replicas probed on /-/healthy and
/-/ready, a disruption budget, rules from a ConfigMap, secrets only by reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from responder.rules.loader import load_rules
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "kubernetes"
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "DATABASE_URL")


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((K8S / name).read_text())
    return loaded


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VALIDATOR), "--strict", "--quiet", *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_core_manifests_validate_offline() -> None:
    """Every built-in kind validates against the schemas kubernetes-validate ships."""
    files = [p for p in sorted(K8S.glob("*.yaml"))
             if p.name not in ("kustomization.yaml", "servicemonitor.yaml")]
    done = validate(*files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout


def test_validator_refuses_a_broken_manifest(tmp_path: Path) -> None:
    """The check is not a no-op: a Deployment with a wrong type is refused."""
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "deployment.yaml").read_text().replace("replicas: 2",
                                                                    "replicas: two", 1))
    done = validate(broken)
    assert done.returncode != 0
    assert "replicas" in done.stdout + done.stderr


def test_service_monitor_against_its_local_schema() -> None:
    """ServiceMonitor is a CRD kubernetes-validate has no schema for: a local one checks it."""
    schema = json.loads((K8S / "schemas" / "servicemonitor.json").read_text())
    jsonschema.validate(manifest("servicemonitor.yaml"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**manifest("servicemonitor.yaml"), "spec": {"endpoints": []}},
                            schema)


def test_ha_layout() -> None:
    """Two or more replicas, probes on Prometheus' paths, a PDB and a Service selecting the
    pods, secrets by reference only, and every file in the kustomization."""
    deployment = manifest("deployment.yaml")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    [responder] = [c for c in spec["template"]["spec"]["containers"]
                   if c["name"] == "responder"]
    assert responder["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert responder["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "secretName" in volumes["secrets"]["secret"]
    for env in responder["env"]:
        # A *_FILE setting names a file on a secret volume: a path, not a secret.
        if any(word in env["name"] for word in SECRET_WORDS) and not env["name"].endswith(
                "_FILE"):
            assert "value" not in env, env["name"]
            assert "secretKeyRef" in env["valueFrom"], env["name"]
    pdb = manifest("poddisruptionbudget.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifest("service.yaml")["spec"]["selector"].items() <= labels.items()
    monitor = manifest("servicemonitor.yaml")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    listed = set(manifest("kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_rules_config_map_is_a_valid_table(tmp_path: Path) -> None:
    """The example rules in the ConfigMap load as a rule table."""
    for name, text in manifest("rules-configmap.yaml")["data"].items():
        (tmp_path / name).write_text(text)
    table = load_rules(tmp_path, resolve_secrets=False)
    assert [r.id for r in table.rules] == ["split-brain-unscoped"]
