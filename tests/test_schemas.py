"""The documented message schemas accept what responder accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
CHECK = Path(sys.executable).parent / "check-jsonschema"


def _valid(schema: Path, instance: Path) -> bool:
    result = subprocess.run([str(CHECK), "--schemafile", str(schema), str(instance)],
                            capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0


def test_captured_alertmanager_payloads_match_the_schema() -> None:
    """Every captured Alertmanager payload validates against the Kafka payload schema."""
    for fixture in (ROOT / "tests" / "fixtures").glob("*.json"):
        assert _valid(SCHEMAS / "kafka-alertmanager.schema.json", fixture), fixture


def test_normalised_alert_schema(tmp_path: Path) -> None:
    """A normalised alert validates; one with an unknown field does not."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"status": "firing", "starts_at": "2026-11-23T06:00:00Z",
                                "labels": {"alertname": "X"}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"status": "firing", "starts_at": "2026-11-23T06:00:00Z",
                               "labels": {"alertname": "X"}, "extra": 1}))
    assert _valid(SCHEMAS / "kafka-alert.schema.json", good)
    assert not _valid(SCHEMAS / "kafka-alert.schema.json", bad)


def test_metric_samples_schema_agrees_with_the_parser(tmp_path: Path) -> None:
    """The three documented sample shapes validate and parse; a poison one fails both."""
    from responder.intake.alertmanager import PayloadError
    from responder.intake.samples import parse_samples

    one = {"name": "settlement_lag_p99", "labels": {"venue": "main"}, "value": 42.5,
           "ts": 1795000000.25}
    shapes = {"one": one, "array": [one, {**one, "ts": 1795000015}], "batch": {"samples": [one]}}
    for name, body in shapes.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        assert _valid(SCHEMAS / "kafka-metric-samples.schema.json", path), name
        assert parse_samples(path.read_bytes(), 10_000)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"samples": [{**one, "value": "high"}]}))
    assert not _valid(SCHEMAS / "kafka-metric-samples.schema.json", bad)
    with pytest.raises(PayloadError):
        parse_samples(bad.read_bytes(), 10_000)
