"""Build and seal an incident's forensic bundle.

The bundle holds what responder saw (the raw alerts), what it decided with (the rule and the
rule-bundle hash), what it did and what the target answered (every action record, already
redacted), and where each control stands now. It is canonical JSON with a SHA-256 digest.
A sealed version is never changed: a later change makes a new version that names the digest
of the one before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from responder import __version__
from responder.audit import bundle_proofs as audit_proofs
from responder.config import SinkSpec
from responder.evidence.outbox import outbox_rows
from responder.rules.table import RuleTable
from responder.store import evidence as store
from responder.store.actionlog import ChainAppender, Entry, canonical, canonical_plain
from responder.store.kinds import Kind
from responder.store.outbox import OutboxRow, enqueue
from responder.store.types import Conn, Row


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record_values(body: str) -> Any:
    """json.loads(body), faster for a record orjson wrote (most are): where orjson spells
    what it read back as the very text, nothing in it can have read otherwise (an integer
    past 64 bits would come back as a float, a duplicate key would be gone, and a float's
    shortest spelling reads to that float whoever reads it). What orjson refuses to read or
    write (NaN, a lone surrogate, deep nesting) goes to json.loads."""
    with contextlib.suppress(orjson.JSONDecodeError, orjson.JSONEncodeError):
        values = orjson.loads(body)
        if orjson.dumps(values, option=orjson.OPT_SORT_KEYS) == body.encode():
            return values
    return json.loads(body)


async def build(conn: Conn, incident_id: int, table: RuleTable) -> dict[str, Any] | None:
    """The bundle's content for one incident; see build_many."""
    return (await build_many(conn, [incident_id], table)).get(incident_id)


async def build_many(conn: Conn, incident_ids: Sequence[int],
                     table: RuleTable) -> dict[int, dict[str, Any]]:
    """Each incident's bundle content as the store holds it now, by incident id (an id with
    no incident is left out), read with one query per kind of row whatever the count.

    Content has no timestamps of its own, so an unchanged incident builds the same content.
    """
    found = await store.sources(conn, incident_ids)
    return {i["id"]: _content(i, table, found.alerts.get(i["id"], []),
                              found.records.get(i["id"], []),
                              found.controls.get(i["id"], []),
                              found.snapshots.get(i["id"], []))
            for i in found.incidents}


def _content(incident: Row, table: RuleTable, alerts: list[Row], records: list[Row],
             controls: list[Row], snapshots: list[Row]) -> dict[str, Any]:
    rule = table.rule(incident["rule_id"])
    return {
        "incident": {"id": incident["id"], "rule_id": incident["rule_id"],
                     "scope": incident["scope"], "severity": incident["severity"],
                     "status": incident["status"],
                     "correlation_id": incident["correlation_id"],
                     "opened_at": incident["opened_at"].isoformat(),
                     "resolved_at": incident["resolved_at"].isoformat()
                     if incident["resolved_at"] else None},
        "rules_hash_at_open": incident["rules_hash"],
        "rules_hash_now": table.bundle_hash,
        "rules_signed_hash_now": table.signed_hash,
        "rule": None if rule is None else {
            "id": rule.id, "description": rule.description, "severity": rule.severity,
            "match": [str(m) for m in rule.matchers], "file": rule.file, "line": rule.line,
            "steps": [s.describe() for s in rule.steps],
            "on_failure": rule.on_failure.describe() if rule.on_failure else None,
            "page": rule.page,
            "runbook": rule.runbook,
        },
        "alerts": [{"inbox_id": a["id"], "received_at": a["received_at"].isoformat(),
                    "deliveries": a["deliveries"], "alert": json.loads(a["alert"])}
                   for a in alerts],
        "actions": [{**record_values(r["body"]), "hash": r["hash"]} for r in records],
        "snapshots": [{"name": s["name"], "kind": s["kind"], "ok": s["ok"],
                       "taken_at": s["taken_at"].isoformat(), "result": json.loads(s["result"])}
                      for s in snapshots],
        "controls": [{"control": c["control"], "key": c["key"], "level": c["level"],
                      "set_by": c["set_by"], "set_kind": c["set_kind"],
                      "verified": c["verified"], "since": c["updated_at"].isoformat()}
                     for c in controls],
    }


@dataclass(frozen=True)
class Seal:
    """A writer unit: seal content (built by build_many()) as the incident's next version if
    it changed since the last one. Concurrent seals merge into a few statements.

    Building reads a lot and runs outside the writer; this part is cheap and runs inside it.
    """

    incident_id: int
    content: dict[str, Any]
    sinks: Sequence[SinkSpec] = ()
    link: str = ""
    sealed: Callable[[], None] | None = None
    built_at: datetime | None = None
    """When the content's reads began (store.evidence.clock()); None: not known."""

    async def __call__(self, conn: Conn, chain: ChainAppender) -> dict[str, Any] | None:
        return (await self.run_many(conn, chain, [self]))[0]

    @staticmethod
    async def run_many(conn: Conn, chain: ChainAppender,
                       seals: Sequence[Seal]) -> list[dict[str, Any] | None]:
        """The version and digest sealed for each, or None where nothing new was sealed."""
        # Replicas seal the incidents they changed; one seal per incident at a time.
        await store.lock_for_seal(conn, [s.incident_id for s in seals])
        results: list[dict[str, Any] | None] = [None] * len(seals)
        for positions in _rounds(seals):
            sealed = await _seal_round(conn, chain, [seals[i] for i in positions])
            for i, result in zip(positions, sealed, strict=True):
                results[i] = result
        return results


def _rounds(seals: Sequence[Seal]) -> list[list[int]]:
    """Positions of seals split so that each incident is at most once per round, in order:
    a second seal of one incident must chain onto the version the first one made."""
    rounds: list[list[int]] = []
    seen: dict[int, int] = {}
    for i, s in enumerate(seals):
        n = seen.get(s.incident_id, 0)
        seen[s.incident_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


def _news(content: dict[str, Any]) -> dict[str, Any]:
    """What a new version is compared on: the content without the records of earlier seals.

    Every seal appends a record to the incident's log, so counting those would make each
    version news to the next, and an incident touched again unchanged would be sealed again.
    """
    return {**content,
            "actions": [a for a in content["actions"] if a["kind"] != "evidence_sealed"]}


async def _seal_round(conn: Conn, chain: ChainAppender,
                      seals: Sequence[Seal]) -> list[dict[str, Any] | None]:
    last = await store.last_versions(conn, [s.incident_id for s in seals])
    host = socket.gethostname()
    results: list[dict[str, Any] | None] = []
    rows: list[store.VersionRow] = []
    deliveries: list[OutboxRow] = []
    for s in seals:
        # One walk of the content for both texts: what is news is a part of it, and the
        # bundle is all of it and a few fields more. (Content that is not plain may still
        # hold plain news: canonical() looks at that itself.)
        is_plain = canonical_plain(s.content)
        content_digest = digest_of(canonical(_news(s.content), is_plain=is_plain or None))
        prior = last.get(s.incident_id)
        actions_seq = max((a["seq"] for a in s.content["actions"]), default=0)
        if prior is not None and prior["content_digest"] == content_digest:
            results.append(None)  # unchanged since the last version
            continue
        if prior is not None and (prior["actions_seq"] or 0) > actions_seq:
            results.append(None)  # built before another replica's newer seal: that one is current
            continue
        if (prior is not None and (prior["actions_seq"] or 0) == actions_seq
                and prior["built_at"] is not None and s.built_at is not None
                and prior["built_at"] > s.built_at):
            results.append(None)  # same actions, read earlier than the current version
            continue
        version = 1 if prior is None else prior["version"] + 1
        prev = None if prior is None else prior["digest"]
        bundle = {"version": version, "prev_digest": prev,
                  "sealed_at": datetime.now(UTC).isoformat(),
                  "responder": {"version": __version__, "host": host}, **s.content}
        await audit_proofs.attach(conn, chain, bundle, s.sinks)
        body = canonical(bundle, is_plain=is_plain and canonical_plain(
            [v for k, v in bundle.items() if k not in s.content]))
        digest = digest_of(body)
        sealed_rows, paged_seq = outbox_rows(s.incident_id, version, digest, bundle, s.sinks,
                                             s.link, None if prior is None
                                             else prior["paged_seq"])
        deliveries += sealed_rows
        rows.append((s.incident_id, version, digest, content_digest, prev, body, actions_seq,
                     s.built_at, paged_seq))
        chain.add(Entry(Kind.EVIDENCE_SEALED, incident_id=s.incident_id,
                        correlation_id=s.content["incident"]["correlation_id"],
                        detail={"version": version, "digest": digest, "prev_digest": prev}))
        if s.sealed is not None:
            chain.after_commit(s.sealed)
        results.append({"version": version, "digest": digest})
    await store.insert_versions(conn, rows)
    # In the same transaction: a crash cannot seal a version and lose its deliveries.
    await enqueue(conn, deliveries)
    return results

