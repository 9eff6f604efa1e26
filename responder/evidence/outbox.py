"""The transactional outbox: deliveries written with the change they announce, then sent
until each sink has taken them, with capped backoff, for the sink's ``retry_for_s`` (hours).
After that a row is dead: logged at error level, counted in ``responder_outbox_dead``,
alerted on, and paged through the other paging sinks, until ``responder outbox retry``
(evidence/redrive.py) sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog

from responder.config import SinkSpec
from responder.errors import StoreError
from responder.evidence.pages import incident_link, next_page
from responder.evidence.sinks import DeliveryError, Sink
from responder.metrics import Metrics
from responder.store import outbox as table
from responder.store.outbox import Claimed, OutboxRow
from responder.store.types import Pool

log = structlog.get_logger("responder.outbox")

LEASE_S = 30.0


def summary(bundle: dict[str, Any], link: str) -> str:
    """One readable line: severity, rule, what is contained, verified or not, a link."""
    incident = bundle["incident"]
    controls = ", ".join(
        f"{c['control']}{'[' + c['key'] + ']' if c['key'] else ''}={c['level']}"
        f"{'' if c['verified'] else ' (unverified)'}" for c in bundle["controls"]) or "nothing"
    failed = sum(a["kind"] == "containment_failed" for a in bundle["actions"])
    tail = f"; CONTAINMENT FAILED x{failed}" if failed else ""
    cid = f" [cid {incident['correlation_id']}]" if incident.get("correlation_id") else ""
    return (f"[{incident['severity'].upper()}] {incident['rule_id']} ({incident['scope'] or '-'})"
            f": contained {controls}{tail}. {link}{cid}")


def outbox_rows(incident_id: int, version: int, digest: str, bundle: dict[str, Any],
                sinks: Sequence[SinkSpec], base_url: str,
                paged_seq: int | None = None) -> tuple[list[OutboxRow], int | None]:
    """Outbox rows for a newly sealed version: the bundle for bundle sinks, and the page it
    owes (at most one); and the last record paged so far, for the version to keep."""
    text = summary(bundle, incident_link(base_url, incident_id))
    rows: list[OutboxRow] = []
    for sink in sinks:
        if sink.bundles:
            rows.append((incident_id, sink.name, "bundle",
                         f"bundle-{incident_id}-v{version}-{sink.name}",
                         json.dumps({"kind": "bundle", "incident_id": incident_id,
                                     "version": version, "digest": digest, "summary": text,
                                     "bundle": bundle})))
    page = next_page(bundle, paged_seq, base_url)
    if page is None:
        return rows, paged_seq
    payload = json.dumps(page.payload(incident_id, digest,
                                      bundle["incident"].get("correlation_id")))
    rows += [(incident_id, sink.name, "page", f"{page.key}-{sink.name}", payload)
             for sink in sinks if sink.pages]
    return rows, page.through_seq


class OutboxWorker:
    """Delivers due outbox rows; safe to run on several replicas (rows are claimed)."""

    def __init__(self, pool: Pool, sinks: dict[str, Sink], specs: Sequence[SinkSpec],
                 metrics: Metrics, *, poll_s: float = 0.5, batch: int = 50,
                 replica: str | None = None) -> None:
        self._pool = pool
        self._replica = replica  # who claims rows (store/liveness.py hands them on)
        self._sinks = sinks
        self._specs = {s.name: s for s in specs}
        self._metrics = metrics
        self._poll_s = poll_s
        self._batch = batch
        self.wake = asyncio.Event()

    async def close(self) -> None:
        """Close sinks that hold connections (Kafka producers)."""
        for sink in self._sinks.values():
            close = getattr(sink, "close", None)
            if close is not None:
                await close()

    async def run(self) -> None:
        while True:
            try:
                delivered = await self.deliver_due()
                await self._update_backlog()
            except StoreError as e:
                log.warning("outbox: store unavailable", error=str(e))
                delivered = 0
            if not delivered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self._poll_s)
                self.wake.clear()

    async def deliver_due(self) -> int:
        rows = await table.claim_due(self._pool, self._batch, LEASE_S, self._replica)
        done = await asyncio.gather(*(self._deliver(r) for r in rows))
        return sum(done)

    async def _deliver(self, row: Claimed) -> bool:
        sink = self._sinks.get(row.sink)
        spec = self._specs.get(row.sink)
        if sink is None or spec is None:
            await self._failed(row, f"sink {row.sink} is no longer configured", None)
            return False
        try:
            await sink.deliver(row.idempotency_key, row.kind, json.loads(row.payload))
        except DeliveryError as e:
            await self._failed(row, str(e), spec)
            return False
        await table.delivered(self._pool, row.id)
        self._metrics.deliveries.labels(row.sink, "delivered").inc()
        return True

    async def _failed(self, row: Claimed, error: str, spec: SinkSpec | None) -> None:
        self._metrics.deliveries.labels(row.sink, "failed").inc()
        if spec is not None and not gives_up(spec, row.attempts, row.trying_s):
            if row.attempts == 1:
                log.warning("delivery failed; retrying with backoff", sink=row.sink,
                            key=row.idempotency_key, error=error,
                            retry_for_s=spec.retry_for_s)
            backoff = timedelta(seconds=backoff_s(spec, row.attempts))
            await table.retry_later(self._pool, row.id, backoff, error)
            return
        log.error("delivery dead after retrying; `responder outbox retry` sends it again",
                  sink=row.sink, key=row.idempotency_key, attempts=row.attempts,
                  error=error)
        self._metrics.deliveries.labels(row.sink, "dead").inc()
        payload = json.dumps({"kind": "page", "reason": "dead_delivery",
                              "incident_id": row.incident_id, "sink": row.sink,
                              "summary": f"delivery {row.idempotency_key} to {row.sink}"
                                         f" is dead after {row.attempts} attempts: {error}."
                                         " Send it again with `responder outbox retry`.",
                              "link": ""})
        pages = [s for s in self._specs.values() if s.pages and s.name != row.sink]
        await table.dead(self._pool, row.id, error,
                         [(row.incident_id, s.name, "page", f"dead-{row.id}-{s.name}", payload)
                          for s in pages])

    async def _update_backlog(self) -> None:
        counts = await table.backlog(self._pool)
        for name in self._specs | {sink: None for sink, _ in counts}:
            self._metrics.outbox_backlog.labels(name).set(counts.get((name, "pending"), 0))
            self._metrics.outbox_dead.labels(name).set(counts.get((name, "dead"), 0))


def gives_up(spec: SinkSpec, attempts: int, trying_s: float) -> bool:
    """Whether a row that just failed is dead: retried for retry_for_s, or out of attempts."""
    return trying_s >= spec.retry_for_s or (spec.max_attempts is not None
                                            and attempts >= spec.max_attempts)


def backoff_s(spec: SinkSpec, attempts: int) -> float:
    """Wait before the next attempt: 0.5 s doubling per attempt, capped at max_backoff_s."""
    return min(spec.max_backoff_s, 0.5 * 2.0 ** min(attempts - 1, 30))
