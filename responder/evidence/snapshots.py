"""Snapshots for evidence: Prometheus instant queries and calls to targets (a GET of a
status endpoint, a POST asking the target to preserve something), taken once when an
incident is first sealed. A failed snapshot is kept as failed, never dropped, so the bundle
says what could not be seen.

A query or a GET says nothing of the incident that asks it, so the incidents first sealed
in one pass share one answer (``Reads``): a burst of a hundred incidents reads a status
page once, not a hundred times. A POST is made per incident, under its own
Idempotency-Key: the target preserves something for that incident.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from responder import jsontext
from responder.redaction import Redactor
from responder.rules.table import Rule, SnapshotCall

MAX_RESULT = 65_536

ReadKey = tuple[str, ...]


class Reads:
    """The answers of one sealing pass to the reads that do not depend on the incident."""

    def __init__(self) -> None:
        self._taken: dict[ReadKey, asyncio.Future[Snapshot]] = {}

    async def once(self, key: ReadKey, read: Callable[[], Awaitable[Snapshot]]) -> Snapshot:
        taken = self._taken.get(key)
        if taken is None:
            taken = self._taken[key] = asyncio.ensure_future(read())
        # One waiter cancelled must not cancel the read the others wait for.
        return await asyncio.shield(taken)


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
               redactor: Redactor, incident_id: int | None = None,
               reads: Reads | None = None) -> list[Snapshot]:
    """Every snapshot the rule declares, taken concurrently; the queries and GETs through
    ``reads`` when the pass shares them."""
    shared = reads or Reads()
    jobs = [shared.once(("prometheus", n, q, str(t)),
                        functools.partial(_query, session, prometheus_url, n, q, t))
            for n, q, t in rule.queries]
    for call in rule.snapshots:
        made = functools.partial(_call, session, redactor, rule, call, incident_id)
        if call.method == "GET":
            jobs.append(shared.once(("http", call.name, call.target.name,
                                     call.target.base_url + call.path, str(call.timeout_s)),
                                    made))
        else:
            jobs.append(made())
    return list(await asyncio.gather(*jobs))
