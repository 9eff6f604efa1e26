"""Snapshots for evidence: Prometheus instant queries and calls to targets (a GET of a
status endpoint, a POST asking the target to preserve something), taken once when an
incident is first sealed. A failed snapshot is kept as failed, never dropped, so the bundle
says what could not be seen."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass

import aiohttp

from responder import jsontext
from responder.redaction import Redactor
from responder.rules.table import Rule, SnapshotCall

MAX_RESULT = 65_536


@dataclass(frozen=True)
class Snapshot:
    name: str
    kind: str
    ok: bool
    result: str


async def _query(session: aiohttp.ClientSession, base: str | None, name: str, query: str,
                 timeout_s: float) -> Snapshot:
    if base is None:
        return Snapshot(name, "prometheus", False, json.dumps(
            {"error": "RESPONDER_PROMETHEUS_URL is not set", "query": query}))
    try:
        async with session.get(f"{base.rstrip('/')}/api/v1/query", params={"query": query},
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            text = (await resp.content.read(MAX_RESULT)).decode("utf-8", "replace")
            answer = jsontext.loads(text) if resp.status == 200 else None
            ok = isinstance(answer, dict) and answer.get("status") == "success"
    except (aiohttp.ClientError, TimeoutError, jsontext.JSONTextError) as e:
        return Snapshot(name, "prometheus", False,
                        json.dumps({"error": f"{type(e).__name__}: {e}", "query": query}))
    return Snapshot(name, "prometheus", ok, json.dumps({"query": query, "answer": text}))


async def _call(session: aiohttp.ClientSession, redactor: Redactor, rule: Rule,
                call: SnapshotCall, incident_id: int | None) -> Snapshot:
    target = call.target
    headers = {}
    if target.token is not None:
        headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
    body = None
    if call.method == "POST":
        body = {"rule_id": rule.id, "incident_id": incident_id,
                "reason": f"evidence for incident {incident_id} of rule {rule.id}"}
        headers["Idempotency-Key"] = f"snapshot-{incident_id}-{call.name}"
    try:
        async with session.request(call.method, target.base_url + call.path, json=body,
                                   headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=call.timeout_s)) as resp:
            raw = await resp.content.read(MAX_RESULT)
            ok = 200 <= resp.status < 300
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return Snapshot(call.name, "http", False, json.dumps(
            {"method": call.method, "path": call.path, "error": f"{type(e).__name__}: {e}"}))
    # The hash is of the bytes the target sent, so it can be checked against the target's
    # own copy; the body kept is redacted.
    return Snapshot(call.name, "http", ok, json.dumps({
        "method": call.method, "path": call.path, "status": status,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "body": redactor.text(raw.decode("utf-8", "replace"))}))


async def take(session: aiohttp.ClientSession, rule: Rule, prometheus_url: str | None,
               redactor: Redactor, incident_id: int | None = None) -> list[Snapshot]:
    """Every snapshot the rule declares, taken concurrently."""
    jobs = [_query(session, prometheus_url, n, q, t) for n, q, t in rule.queries]
    jobs += [_call(session, redactor, rule, call, incident_id) for call in rule.snapshots]
    return list(await asyncio.gather(*jobs))
