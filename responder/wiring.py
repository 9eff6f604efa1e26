"""Builds the daemon's object graph from settings: the store, the writer, the clients, the
engine's parts, the evidence workers and the state handlers see.

Only the daemon (and, if it ever needs to, the CLI) may import this module; everything else
is handed what it needs. Each part that holds a resource pushes its release onto the stack
it is given, so the caller releases them in reverse order of acquisition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from responder import failpoints
from responder.actions.admin_http import AdminClient
from responder.audit.checkpoints import Checkpointer
from responder.auth import Principals, Role, TokenSet, token_sha256
from responder.config import Settings
from responder.engine.executor import Executor
from responder.engine.modes import Modes
from responder.engine.reconciler import Reconciler
from responder.engine.storm import StormGuard
from responder.evidence.builder import EvidenceBuilder
from responder.evidence.outbox import OutboxWorker
from responder.evidence.sinks import build_sinks
from responder.evidence.snapshots import Reads, Snapshot
from responder.evidence.snapshots import take as take_snapshots
from responder.intake.kafka import KafkaIntake
from responder.intake.kafka_metrics import MetricsIntake
from responder.intake.pipeline import AlertPipeline
from responder.jobs.reload import RuleReloader
from responder.metrics import Metrics
from responder.redaction import Redactor
from responder.rules.table import Rule, RuleTable
from responder.state import DaemonState
from responder.store.db import acquire, create_pool, migrate
from responder.store.embedded import start_embedded
from responder.store.types import Pool
from responder.store.writer import Writer
from responder.tlog.note import Notary

log = structlog.get_logger("responder")

POOL_CLOSE_S = 5.0

Consumer = KafkaIntake | MetricsIntake


def principals_from(settings: Settings) -> Principals:
    """Configured principals, plus each plain viewer token as a viewer (the quick start)."""
    entries: list[tuple[str, Role, str]] = [(p.name, p.role, p.token_sha256)
                                            for p in settings.access.principals]
    entries += [(f"viewer-token-{i + 1}", "viewer", token_sha256(t.get_secret_value()))
                for i, t in enumerate(settings.access.viewer_tokens)]
    return Principals(entries)


async def resolve_dsn(settings: Settings) -> str:
    """The configured database, or the embedded one under the data directory."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return await start_embedded(settings.data_dir)


async def open_store(dsn: str, stack: contextlib.AsyncExitStack) -> Pool:
    """The pool, migrated to this version's schema."""
    pool: Pool = await create_pool(dsn)
    stack.push_async_callback(_close_pool, pool)
    await failpoints.hold(failpoints.START_BEFORE_MIGRATE)
    applied = await migrate(pool)
    if applied:
        log.info("migrations applied", versions=applied)
    return pool


async def _close_pool(pool: Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=POOL_CLOSE_S)
    except TimeoutError:
        pool.terminate()


@dataclass(frozen=True)
class Graph:
    """The parts the daemon starts, serves with and stops."""

    state: DaemonState
    writer: Writer
    executor: Executor
    reconciler: Reconciler
    checkpointer: Checkpointer
    evidence: EvidenceBuilder
    outbox: OutboxWorker
    reloader: RuleReloader

    def rules(self) -> RuleTable:
        """The table in force now (a reload replaces it)."""
        return self.state.rules


async def build(settings: Settings, *, metrics: Metrics, redactor: Redactor, rules: RuleTable,
                notary: Notary, pool: Pool, replica_id: str, holds_name: Callable[[], bool],
                stack: contextlib.AsyncExitStack) -> Graph:
    """Every part, connected; nothing runs yet but the admin client's session."""
    s = settings
    state: DaemonState | None = None

    def in_force() -> RuleTable:  # the handlers' table: a reload replaces it
        assert state is not None
        return state.rules

    writer = Writer(pool, lambda: in_force().bundle_hash, max_pending=s.intake.queue_max,
                    signed_hash=lambda: in_force().signed_hash, notary=notary)
    client = AdminClient(metrics, redactor)
    await client.start()
    stack.push_async_callback(client.close)
    modes = await _load_modes(s, pool)
    evidence, outbox = _evidence(s, metrics, redactor, pool, writer, in_force, stack,
                                 replica_id)
    checkpointer = Checkpointer(pool, notary, s.evidence.sinks, delivered=outbox.wake.set)

    def changed(incident_ids: set[int]) -> None:
        evidence.touch(incident_ids)
        checkpointer.touch(incident_ids)

    # After every commit, so a SEV1's outcome record is in the store when it is looked for.
    writer.changed = changed
    executor = Executor(pool, writer, in_force, client, metrics,
                        deadline_s=s.steps.deadline_s, read_back_s=s.steps.read_back_deadline_s,
                        changed=changed, replica=replica_id,
                        lease_s=s.steps.lease_s,
                        # A replica that lost its name calls nothing (docs/takeover.md).
                        may_act=lambda: modes.is_enforcing() and holds_name())
    reconciler = Reconciler(pool, writer, in_force, client, executor, metrics,
                            deadline_s=s.steps.deadline_s, policy=modes.policy)
    pipeline = AlertPipeline(writer=writer, executor=executor, rules=in_force, modes=modes,
                             metrics=metrics, redactor=redactor, lease_s=s.steps.lease_s,
                             evidence=evidence)
    state = DaemonState(
        settings=s, metrics=metrics, redactor=redactor,
        webhook_tokens=TokenSet(s.access.webhook_tokens), principals=principals_from(s),
        rules=rules, pool=pool, writer=writer, executor=executor, client=client,
        modes=modes, pipeline=pipeline, evidence=evidence,
    )
    reloader = RuleReloader(state)
    state.reload = reloader.reload
    return Graph(state, writer, executor, reconciler, checkpointer, evidence, outbox, reloader)


def kafka_consumers(settings: Settings, state: DaemonState) -> list[Consumer]:
    """The Kafka intakes these settings ask for (none without brokers)."""
    consumers: list[Consumer] = []
    if settings.kafka.bootstrap:
        consumers.append(KafkaIntake(settings, state))
        if settings.kafka.metrics_topic:
            consumers.append(MetricsIntake(settings, state))
    return consumers


async def _load_modes(s: Settings, pool: Pool) -> Modes:
    modes = Modes(max_alert_age_s=s.intake.max_alert_age_s,
                  guard=StormGuard(s.storm.window_s, s.storm.max_incidents))
    async with acquire(pool) as conn:
        await modes.load(conn)
    if modes.global_mode != "enforce" or modes.policy().break_glass:
        log.warning("automation is not enforcing", **modes.describe())
    return modes


def _evidence(s: Settings, metrics: Metrics, redactor: Redactor, pool: Pool, writer: Writer,
              in_force: Callable[[], RuleTable], stack: contextlib.AsyncExitStack,
              replica_id: str) -> tuple[EvidenceBuilder, OutboxWorker]:
    session = aiohttp.ClientSession()
    stack.push_async_callback(session.close)
    outbox = OutboxWorker(pool, build_sinks(list(s.evidence.sinks), session),
                          s.evidence.sinks, metrics, replica=replica_id)
    stack.push_async_callback(outbox.close)

    async def snapshotter(incident_id: int, rule: Rule, reads: Reads) -> list[Snapshot]:
        return await take_snapshots(session, rule, s.evidence.prometheus_url, redactor,
                                    incident_id, reads)

    evidence = EvidenceBuilder(pool, writer, in_force, sinks=s.evidence.sinks,
                               link=s.web.public_url or f"http://{s.web.listen}",
                               sealed=outbox.wake.set, snapshotter=snapshotter)
    return evidence, outbox
