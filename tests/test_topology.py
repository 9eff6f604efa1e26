"""The docker-compose topology as plain processes on loopback: a Kafka-protocol broker,
PostgreSQL, the real Alertmanager (with the shipped config, pointed at both replicas), two
responder processes in one consumer group, the exchange, and Prometheus when installed."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, WEBHOOK_TOKEN, Broker, Exchange, Proc, free_port, wait_for
from tests.test_e2e_alertmanager import ALERTMANAGER, Alertmanager, _ready, _stop
from tests.test_kafka import kafka_settings, normalised, produce
from tests.test_process import spawn
from tests.test_replicas import audit_verify, calls_by_path, log_details, no_pending, rows
from tests.test_replicas import replica_env as base_env

PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(ALERTMANAGER is None,
                                reason="the Alertmanager binary is not installed")


def shipped_alertmanager_config(replica_ports: list[int], token_file: Path) -> str:
    """deploy/alertmanager.yml with the compose service names replaced by loopback ports."""
    yaml = YAML(typ="safe")
    config: dict[str, Any] = yaml.load((ROOT / "deploy" / "alertmanager.yml").read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    hooks = receiver["webhook_configs"]
    assert len(hooks) == len(replica_ports)  # the shipped file names every replica
    for hook, port in zip(hooks, replica_ports, strict=True):
        hook["url"] = f"http://127.0.0.1:{port}/webhooks/alertmanager"
        hook["http_config"] = {"authorization": {"type": "Bearer",
                                                 "credentials_file": str(token_file)}}
    out = io.StringIO()
    yaml.dump(config, out)
    return out.getvalue()


async def start_alertmanager(tmp_path: Path, http: aiohttp.ClientSession,
                             config: str) -> Alertmanager:
    assert ALERTMANAGER is not None
    home = tmp_path / "alertmanager"
    home.mkdir()
    (home / "am.yml").write_text(config)
    for _ in range(3):  # a port taken between free_port() and the bind: try another
        port = free_port()
        log_path = home / f"alertmanager-{port}.log"
        with log_path.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                ALERTMANAGER, f"--config.file={home / 'am.yml'}",
                f"--storage.path={home / f'data-{port}'}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT)
        am = Alertmanager(process, port, log_path)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.returncode is None:
            if await _ready(http, am):
                return am
            await asyncio.sleep(0.05)
        await _stop(am)
    raise AssertionError(f"Alertmanager did not start:\n{am.log()}")


def start_prometheus(tmp_path: Path, targets: dict[str, list[int]]) -> tuple[
        subprocess.Popen[bytes], int]:
    """deploy/prometheus.yml with loopback targets and a fast scrape interval."""
    assert PROMETHEUS is not None
    yaml = YAML(typ="safe")
    config: dict[str, Any] = yaml.load((ROOT / "deploy" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ROOT / "deploy" / "responder-alerts.yml")]
    config.pop("alerting", None)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{p}"
                                              for p in targets[job["job_name"]]]}]
    home = tmp_path / "prometheus"
    home.mkdir()
    text = io.StringIO()
    yaml.dump(config, text)
    (home / "prometheus.yml").write_text(text.getvalue())
    port = free_port()
    with (home / "prometheus.log").open("wb") as out:
        popen = subprocess.Popen(
            [PROMETHEUS, f"--config.file={home / 'prometheus.yml'}",
             f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT)
    return popen, port


async def targets_up(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    try:
        async with http.get(f"http://127.0.0.1:{port}/api/v1/query",
                            params={"query": "sum by (job) (up)"}) as resp:
            body = await resp.json()
    except aiohttp.ClientError:
        return {}
    return {r["metric"]["job"]: float(r["value"][1]) for r in body["data"]["result"]}


@pytest.mark.timeout(120)
async def test_topology_as_processes_contains_once(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc], kafka: Broker,
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """An alert fired into Alertmanager reaches both replicas and one on the Kafka topic
    reaches the consumer group; each is contained once, and the chain verifies."""
    ks = kafka_settings(kafka)
    kafka_env = {"RESPONDER_KAFKA_BOOTSTRAP": kafka.bootstrap,
                 "RESPONDER_KAFKA_ALERTS_TOPIC": ks["kafka_alerts_topic"],
                 "RESPONDER_KAFKA_DLQ_TOPIC": ks["kafka_dlq_topic"],
                 "RESPONDER_KAFKA_GROUP": ks["kafka_group"]}
    replicas = await asyncio.gather(*(
        spawn(tmp_path, procs, base_env(database, rules_dir, name, **kafka_env))
        for name in ("replica-a", "replica-b")))
    ports = [p.port for p in replicas]
    prometheus = None
    if PROMETHEUS is not None:
        prometheus = start_prometheus(tmp_path, {"responder": ports,
                                                 "exchange": [exchange.port]})
    token_file = tmp_path / "webhook_token"
    token_file.write_text(WEBHOOK_TOKEN)
    am = await start_alertmanager(tmp_path, http, shipped_alertmanager_config(ports, token_file))
    try:
        alert = {"labels": {"alertname": "LedgerInvariantViolation", "severity": "sev1",
                            "symbol": "BTC-USD"}}
        async with http.post(f"{am.url}/api/v2/alerts", json=[alert]) as resp:
            assert resp.status == 200, await resp.text()
        await produce(kafka, ks["kafka_alerts_topic"], normalised("ETH-USD"))

        def contained() -> bool:
            return (exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY"
                    and exchange.state.withdrawals == "HALTED"
                    and exchange.state.symbols.get("ETH-USD") is not None)

        try:
            await wait_for(contained, 45, "both alerts contained")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{am.log()}\n{replicas[0].log()}") from e
        await wait_for(lambda: no_pending(database), 20, "every step closed")

        # Alertmanager delivered to both replicas: one inbox row, two deliveries.
        [am_row] = await rows(database, "SELECT deliveries FROM inbox WHERE source ="
                                        " 'alertmanager'")
        assert am_row["deliveries"] >= 2
        by_path = calls_by_path(exchange)
        for path, calls in by_path.items():
            assert sum(c.applied for c in calls) == 1, (path, calls)
            assert len({c.idempotency_key for c in calls}) == 1, (path, calls)
        assert "/admin/symbols/ETH-USD/mode" in by_path
        outcomes = await log_details(database, "outcome")
        assert len(outcomes) == len(by_path)
        verified = await asyncio.to_thread(audit_verify, database)
        assert verified.returncode == 0, verified.stderr

        if prometheus is not None:
            async def scraped() -> bool:
                return await targets_up(http, prometheus[1]) == {"responder": 2.0,
                                                                 "exchange": 1.0}

            await wait_for(scraped, 30, "Prometheus scraping both replicas and the exchange")
    finally:
        await _stop(am)
        if prometheus is not None:
            prometheus[0].terminate()
            await asyncio.to_thread(prometheus[0].wait, 10)


def test_shipped_alertmanager_config_is_valid(tmp_path: Path) -> None:
    """deploy/alertmanager.yml passes amtool, and names every compose replica."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed")
    checked = subprocess.run([amtool, "check-config", str(ROOT / "deploy" / "alertmanager.yml")],
                             capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    replicas = sorted(n for n, s in compose["services"].items()
                      if "RESPONDER_REPLICA_ID" in s.get("environment", {}))
    assert len(replicas) >= 2
    groups = {compose["services"][n]["environment"]["RESPONDER_KAFKA_GROUP"] for n in replicas}
    stores = {compose["services"][n]["environment"]["RESPONDER_DATABASE_URL"] for n in replicas}
    assert len(groups) == 1 and len(stores) == 1  # one consumer group, one store
    urls = json.dumps(YAML(typ="safe").load((ROOT / "deploy" / "alertmanager.yml").read_text()))
    for name in replicas:
        assert f"http://{name}:9095/webhooks/alertmanager" in urls
