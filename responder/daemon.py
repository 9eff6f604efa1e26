"""The daemon's lifecycle: start, serve until told to stop, shut down in order."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from responder import __version__, failpoints
from responder.actions.admin_http import AdminClient
from responder.app import build_app
from responder.audit.checkpoints import Checkpointer
from responder.audit.keys import load_notary
from responder.auth import Principals, Role, TokenSet, token_sha256
from responder.config import Settings
from responder.engine.executor import STORE_ERRORS, Executor
from responder.engine.manual import expire_requests
from responder.engine.modes import Modes
from responder.engine.reconciler import Reconciler
from responder.engine.resume import Resumer
from responder.engine.storm import StormGuard
from responder.errors import RuleError, RuleProblem, StoreError
from responder.evidence.builder import EvidenceBuilder
from responder.evidence.outbox import OutboxWorker
from responder.evidence.sinks import build_sinks
from responder.evidence.snapshots import Snapshot
from responder.evidence.snapshots import take as take_snapshots
from responder.http_server import CappedSite
from responder.intake.kafka import KafkaIntake
from responder.intake.kafka_metrics import MetricsIntake
from responder.metrics import Metrics
from responder.production import target_problem
from responder.redaction import Redactor
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable
from responder.state import DaemonState
from responder.store import queries
from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn, create_pool, migrate
from responder.store.embedded import start_embedded
from responder.store.identity import Identity
from responder.store.leader import LeaderLoop
from responder.store.writer import Unit, Writer
from responder.web.session import prune_revoked

log = structlog.get_logger("responder")

HTTP_CLOSE_S = 1.0  # open keep-alive connections get this long once intake has stopped
FLUSH_GRACE_S = 5.0
EXPIRY_CHECK_S = 1.0  # after the drain deadline, how long queued outcome writes may take


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



def load_table(s: Settings) -> RuleTable:
    """The rule table in force for these settings; production also refuses demo target tokens."""
    table = load_rules(s.rules.dir, public_keys=s.rules.verify_keys, packs=s.rules.packs)
    if s.env == "production" and (problem := target_problem(table.targets.values())):
        raise RuleError([RuleProblem(str(s.rules.dir), 0, problem)])
    return table

class Daemon:
    """One responder process. Settings are data; this is the behaviour."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 redactor: Redactor | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics(registry)
        self.redactor = redactor or Redactor(settings.secret_values())
        self.should_exit = asyncio.Event()
        self.should_hurry = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self.state: DaemonState | None = None
        self.port: int | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.reconciler: Reconciler | None = None
        self.checkpointer: Checkpointer | None = None
        self.kafka: KafkaIntake | None = None
        self._dsn = ""
        self.metrics_intake: MetricsIntake | None = None
        self.replica_id = ""

    async def run(self) -> None:
        """Start, serve until a signal, shut down.

        The handlers go in before anything starts, so that a signal during the embedded
        store's start or the migrations does not get the default action (death, even for
        SIGHUP): SIGTERM and SIGINT stop the daemon in order once start-up has ended, and
        SIGHUP reloads the rules once the first table is in force.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        try:
            await self.start()
            if self.should_exit.is_set():
                log.info("stop requested during start-up; shutting down")
            else:
                self._spawn(self._reload_on_signal(), "reload-on-sighup")
                await self.should_exit.wait()
        finally:
            await self.shutdown()

    def handle_exit(self, sig: int) -> None:
        """Signal handler: only changes state. A second signal hurries the shutdown: work
        in flight is cancelled at once (it resumes at the next start), but the ordered
        steps after it still run, so nothing recorded is cut off half-written."""
        name = signal.Signals(sig).name
        if self.should_exit.is_set():
            log.warning("second signal: cancelling in-flight work now; shutdown continues in"
                        " order", signal=name)
            self.should_hurry.set()
            return
        log.info("stopping", signal=name)
        self.should_exit.set()

    async def start(self) -> None:
        """Load rules, open the store, start the workers, then listen."""
        s = self.settings
        rules = self._load_rules()
        notary = load_notary(s)  # before the store: production refuses to start without a key
        pool = await self._open_store()
        identity = Identity(self._dsn, s.data_dir, check_s=s.steps.leader_check_s)
        self.replica_id = await identity.take(s.steps.replica_id)
        # Released last: the name stays held until this process has stopped claiming.
        self._stack.push_async_callback(identity.release)
        self._spawn(identity.keep(), "identity")
        writer = Writer(pool, self._rules_hash, max_pending=s.intake.queue_max,
                        signed_hash=lambda: self._rules().signed_hash, notary=notary)
        self._spawn(writer.run(), "writer", stop=lambda t: self._stop_writer(writer, t))
        client = AdminClient(self.metrics, self.redactor)
        await client.start()
        self._stack.push_async_callback(client.close)
        modes = await self._load_modes(pool)
        evidence, outbox = self._evidence(pool, writer)
        self.checkpointer = Checkpointer(pool, notary, s.evidence.sinks, delivered=outbox.wake.set)

        def changed(incident_ids: set[int]) -> None:
            evidence.touch(incident_ids)
            assert self.checkpointer is not None
            self.checkpointer.touch(incident_ids)

        # After every commit, so a SEV1's outcome record is in the store when it is looked for.
        writer.changed = changed

        executor = Executor(pool, writer, self._rules, client, self.metrics,
                            deadline_s=s.steps.deadline_s, read_back_s=s.steps.read_back_deadline_s,
                            changed=changed, replica=self.replica_id,
                            lease_s=s.steps.lease_s, may_act=modes.is_enforcing)
        self.reconciler = Reconciler(pool, writer, self._rules, client, executor, self.metrics,
                                     deadline_s=s.steps.deadline_s, policy=modes.policy)
        self.state = DaemonState(
            settings=s, metrics=self.metrics, redactor=self.redactor,
            webhook_tokens=TokenSet(s.access.webhook_tokens), principals=principals_from(s),
            rules=rules, pool=pool, writer=writer, executor=executor, client=client,
            modes=modes, reload=self.reload, evidence=evidence,
        )
        await self._listen()
        await self._start_kafka()
        resumed = await executor.recover()
        self._spawn(executor.sweep(s.steps.sweep_interval_s), "sweeper")
        self._spawn(Resumer(writer, self._rules, modes, executor, evidence.touch).run(),
                    "resumer")
        if s.evidence.sinks:
            self._spawn(outbox.run(), "outbox")
        self._spawn(evidence.run(), "evidence", stop=lambda t: self._stop_evidence(t, evidence))
        self._spawn(self._watch_expiries(modes, writer, pool, s.intake.event_window_s), "expiries")
        if s.steps.reconcile_interval_s > 0:
            self._spawn(self._leader("reconciler", functools.partial(
                self.reconciler.run, s.steps.reconcile_interval_s)).run(), "reconciler")
        self._spawn(self.checkpointer.after_containment(), "checkpoint-sev1")
        if s.audit.checkpoint_interval_s > 0:
            self._spawn(self._leader("checkpointer", functools.partial(
                self.checkpointer.every, s.audit.checkpoint_interval_s)).run(), "checkpointer")
        if not s.access.webhook_tokens:
            log.warning("no webhook tokens configured: every webhook will be refused")
        log.info("listening", version=__version__, address=f"{s.web.host}:{self.port}",
                 replica=self.replica_id,
                 rules=len(rules.rules), rules_hash=rules.bundle_hash,
                 rules_signed_hash=rules.signed_hash, resumed=resumed)

    async def _start_kafka(self) -> None:
        s = self.settings
        assert self.state is not None
        if s.kafka.bootstrap:
            self.kafka = KafkaIntake(s, self.state)
            await self.kafka.start()
            self._stack.push_async_callback(self.kafka.stop)
            self._spawn(self.kafka.run(), "kafka-intake")
        if s.kafka.bootstrap and s.kafka.metrics_topic:
            self.metrics_intake = MetricsIntake(s, self.state)
            await self.metrics_intake.start()
            self._stack.push_async_callback(self.metrics_intake.stop)
            self._spawn(self.metrics_intake.run(), "kafka-metrics")

    def _leader(self, role: str, work: Callable[[], Coroutine[Any, Any, None]]) -> LeaderLoop:
        """Work that runs on one replica at a time (see store/leader.py)."""
        gauge = self.metrics.leader.labels(role)
        return LeaderLoop(self._dsn, role, work, check_s=self.settings.steps.leader_check_s,
                          on_change=lambda is_leader: gauge.set(int(is_leader)))

    def _load_rules(self) -> RuleTable:
        rules = load_table(self.settings)
        self.redactor.add_secrets(t.token.get_secret_value()
                                  for t in rules.targets.values() if t.token is not None)
        self.metrics.rules_loaded.set(len(rules.rules))
        self.metrics.rules_reload_ok.set(1)
        return rules

    async def _open_store(self) -> asyncpg.Pool:
        self._dsn = await resolve_dsn(self.settings)
        pool: asyncpg.Pool = await create_pool(self._dsn)
        self._stack.push_async_callback(self._close_pool, pool)
        await failpoints.hold(failpoints.START_BEFORE_MIGRATE)
        applied = await migrate(pool)
        if applied:
            log.info("migrations applied", versions=applied)
        return pool

    async def _load_modes(self, pool: asyncpg.Pool) -> Modes:
        s = self.settings
        modes = Modes(max_alert_age_s=s.intake.max_alert_age_s,
                      guard=StormGuard(s.storm.window_s, s.storm.max_incidents))
        async with pool.acquire() as conn:
            await modes.load(conn)
        if modes.global_mode != "enforce" or modes.policy().break_glass:
            log.warning("automation is not enforcing", **modes.describe())
        return modes

    def _evidence(self, pool: asyncpg.Pool,
                  writer: Writer) -> tuple[EvidenceBuilder, OutboxWorker]:
        s = self.settings
        session = aiohttp.ClientSession()
        self._stack.push_async_callback(session.close)
        outbox = OutboxWorker(pool, build_sinks(list(s.evidence.sinks), session), s.evidence.sinks,
                              self.metrics)
        self._stack.push_async_callback(outbox.close)

        async def snapshotter(incident_id: int, table: RuleTable) -> list[Snapshot]:
            async with pool.acquire() as conn:
                rule_id = await conn.fetchval("SELECT rule_id FROM incidents WHERE id = $1",
                                              incident_id)
                taken = await conn.fetchval("SELECT count(*) FROM evidence_snapshots"
                                            " WHERE incident_id = $1", incident_id)
            rule = table.rule(rule_id) if rule_id else None
            if rule is None or taken or not (rule.queries or rule.snapshots):
                return []
            return await take_snapshots(session, rule, s.evidence.prometheus_url, self.redactor,
                                        incident_id)

        evidence = EvidenceBuilder(pool, writer, self._rules, sinks=s.evidence.sinks,
                                   link=s.web.public_url or f"http://{s.web.listen}",
                                   sealed=outbox.wake.set, snapshotter=snapshotter)
        return evidence, outbox

    async def _listen(self) -> None:
        assert self.state is not None
        s = self.settings
        self._runner = web.AppRunner(build_app(self.state), handle_signals=False,
                                     access_log=None, shutdown_timeout=HTTP_CLOSE_S,
                                     keepalive_timeout=s.web.http_header_timeout_s)
        await self._runner.setup()
        self._stack.push_async_callback(self._runner.cleanup)
        await CappedSite(self._runner, s.web.host, s.web.port,
                         max_connections=s.web.http_max_connections,
                         on_refused=self.metrics.connections_refused.inc).start()
        self.port = self._runner.addresses[0][1]

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str,
               stop: Callable[[asyncio.Task[None]], Awaitable[None]] | None = None) -> None:
        """Run a background task and stop it at shutdown (in reverse order of start)."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_ended)
        self._tasks.append(task)
        self._stack.push_async_callback(stop or self._stop_task, task)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A background task must not die unseen: log it, count it, and stop being ready
        so a balancer and the ResponderNotReady alert take the replica out."""
        if task.cancelled() or (error := task.exception()) is None:
            return
        name = task.get_name()
        log.error("background task died; this replica is no longer ready", task=name,
                  error=f"{type(error).__name__}: {error}", exc_info=error)
        self.metrics.task_failures.labels(name).inc()
        if self.state is not None:
            self.state.dead_tasks.add(name)

    def _rules(self) -> RuleTable:
        assert self.state is not None
        return self.state.rules

    def _rules_hash(self) -> str:
        assert self.state is not None
        return self.state.rules.bundle_hash

    async def shutdown(self) -> None:
        """Stop in order, under the shutdown deadline."""
        state = self.state
        if state is not None:
            # 1. Stop intake: webhooks answer 503 from now on, Kafka is paused.
            state.is_draining = True
            for consumer in (self.kafka, self.metrics_intake):
                if consumer is not None:
                    consumer.paused = True
            self.metrics.draining.set(1)
            # 2. Let in-flight containment finish within the deadline.
            # 3. Cancel the rest; they stay pending in the store and resume at next start.
            cancelled = await self._drain(state)
            if cancelled:
                log.warning("shutdown deadline passed; cancelled, will resume at next start",
                            tasks=cancelled)
            # Hand our step leases on now, so another replica need not wait them out.
            try:
                released = await state.executor.let_go()
            except STORE_ERRORS as e:
                log.warning("step leases not released; they run out by themselves",
                            error=str(e))
            else:
                if released:
                    log.info("step leases released for other replicas", steps=released)
        # 4. Kafka offsets need no flush: each batch is committed once it is recorded.
        # 5. Close the HTTP site, flush queued writes (bounded), then the pool.
        await self._stack.aclose()
        log.info("stopped")

    async def _drain(self, state: DaemonState) -> list[str]:
        """executor.drain under the deadline, cut to nothing by a second signal."""
        deadline_s = 0.0 if self.should_hurry.is_set() else self.settings.shutdown_deadline_s
        drain = asyncio.create_task(state.executor.drain(deadline_s), name="drain")
        hurry = asyncio.create_task(self.should_hurry.wait(), name="hurry")
        await asyncio.wait({drain, hurry}, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if drain.done():
            return drain.result()
        # Stop waiting (the in-flight tasks are not the drain's own), then cancel them now.
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        return await state.executor.drain(0.0)

    async def reload(self, by: str) -> RuleTable:
        """Load the rule table again; on any problem keep the last good one and raise."""
        state = self.state
        assert state is not None
        s = self.settings
        old = state.rules
        try:
            table = await asyncio.to_thread(load_table, s)
        except RuleError as e:
            problems = [str(p) for p in e.problems]
            self.metrics.rules_reloads.labels("refused").inc()
            self.metrics.rules_reload_ok.set(0)
            log.error("rule reload refused; the last good table stays in force", by=by,
                      problems=problems, rules_hash=old.bundle_hash)
            await state.writer.submit(_record(Entry("rules_reload_refused", detail={
                "by": by, "problems": problems, "kept": old.bundle_hash})))
            raise
        self.redactor.add_secrets(t.token.get_secret_value()
                                  for t in table.targets.values() if t.token is not None)
        state.rules = table
        self.metrics.rules_loaded.set(len(table.rules))
        self.metrics.rules_reloads.labels("loaded").inc()
        self.metrics.rules_reload_ok.set(1)
        log.info("rules reloaded", by=by, rules=len(table.rules), rules_hash=table.bundle_hash,
                 previous=old.bundle_hash)
        await state.writer.submit(_record(Entry("rules_reloaded", detail={
            "by": by, "from": old.bundle_hash, "to": table.bundle_hash,
            "rules": len(table.rules)})))
        return table

    async def _reload_on_signal(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested.clear()
            with contextlib.suppress(RuleError, StoreError):
                await self.reload("SIGHUP")

    @staticmethod
    async def _watch_expiries(modes: Modes, writer: Writer, pool: asyncpg.Pool,
                              window_s: float) -> None:
        """Record break-glass pauses and release requests that have run out of time.

        Both stop applying at their expiry by themselves; this only writes it down. It runs
        on every replica: each write is conditional on the row, so it happens once. Each
        pass also reloads the mode, which another replica may have switched, and gives the
        blast-radius guard what every replica contained in its window.
        """
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            try:
                async with pool.acquire() as conn:
                    await modes.load(conn)
                    if modes.guard is not None:
                        modes.guard.absorb(await queries.recent_containments(
                            conn, modes.guard.window_s))
                if modes.expired():
                    await writer.submit(modes.end_break_glass("expired"))
                    log.warning("break-glass expired: automation acts again")
                await writer.submit(functools.partial(prune_nonces, window_s=window_s))
                async with pool.acquire() as conn:
                    await prune_revoked(conn)
                expired = await writer.submit(expire_requests)
                if expired:
                    log.warning("release requests expired unapproved", count=expired)
            except STORE_ERRORS as e:
                log.warning("expiries not recorded yet", error=str(e))

    async def _stop_evidence(self, task: asyncio.Task[None], evidence: EvidenceBuilder) -> None:
        """Stop the sealer, then seal what is still waiting (bounded)."""
        await self._stop_task(task)
        try:
            await asyncio.wait_for(evidence.flush(), timeout=FLUSH_GRACE_S)
        except TimeoutError:
            log.warning("evidence not sealed before exit; it is built again at next change")

    @staticmethod
    async def _stop_task(task: asyncio.Task[None]) -> None:
        if task.done():
            return  # ended by itself; an error was logged when it died (_task_ended)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _stop_writer(self, writer: Writer, task: asyncio.Task[None]) -> None:
        writer.stop()
        try:
            await asyncio.wait_for(task, timeout=FLUSH_GRACE_S)
        except TimeoutError:
            # The store is not answering. Nothing acknowledged is lost: unwritten outcomes
            # leave their steps pending, and the next start runs them again (idempotently).
            log.error("queued writes not flushed before exit; pending steps resume at next"
                      " start", backlog=writer.backlog)

    @staticmethod
    async def _close_pool(pool: asyncpg.Pool) -> None:
        try:
            await asyncio.wait_for(pool.close(), timeout=FLUSH_GRACE_S)
        except TimeoutError:
            pool.terminate()


def _record(entry: Entry) -> Unit[None]:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        chain.add(entry)

    return unit


async def prune_nonces(conn: Conn, chain: ChainAppender, *, window_s: float) -> None:
    """Forget event ids older than twice the window: their timestamps are refused anyway."""
    await conn.execute("DELETE FROM event_nonces WHERE seen_at < now() - make_interval("
                       "secs => $1)", 2 * window_s)
