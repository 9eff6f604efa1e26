"""Snapshots for evidence: Prometheus instant queries and GETs of target status endpoints,
taken once when an incident is first sealed. A failed snapshot is kept as failed, never
dropped, so the bundle says what could not be seen."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

from responder import jsontext
from responder.redaction import Redactor
from responder.rules.table import Rule, Target

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


async def _get(session: aiohttp.ClientSession, redactor: Redactor, name: str, target: Target,
               path: str, timeout_s: float) -> Snapshot:
    headers = {}
    if target.token is not None:
        headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
    try:
        async with session.get(target.base_url + path, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            text = (await resp.content.read(MAX_RESULT)).decode("utf-8", "replace")
            ok = 200 <= resp.status < 300
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return Snapshot(name, "http", False, json.dumps({"error": f"{type(e).__name__}: {e}"}))
    return Snapshot(name, "http", ok, json.dumps({"path": path, "status": status,
                                                  "body": redactor.text(text)}))


async def take(session: aiohttp.ClientSession, rule: Rule, prometheus_url: str | None,
               redactor: Redactor) -> list[Snapshot]:
    """Every snapshot the rule declares, taken concurrently."""
    jobs = [_query(session, prometheus_url, n, q, t) for n, q, t in rule.queries]
    jobs += [_get(session, redactor, n, target, p, t) for n, target, p, t in rule.snapshots]
    return list(await asyncio.gather(*jobs))
