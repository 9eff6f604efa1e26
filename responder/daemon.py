"""The daemon's lifecycle: install signals, start, serve until told to stop, shut down in
order. What it starts is built in ``responder.wiring``; its background jobs live in
``responder.jobs``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from responder import __version__, runtime
from responder.app import build_app
from responder.audit.checkpoints import Checkpointer
from responder.audit.keys import load_notary
from responder.config import Settings
from responder.engine import liveness
from responder.engine.reconciler import Reconciler
from responder.engine.resume import Resumer
from responder.errors import StoreError
from responder.http_server import CappedSite
from responder.intake.kafka import KafkaIntake
from responder.intake.kafka_metrics import MetricsIntake
from responder.jobs import Job, Stop, periodic, stop_task
from responder.jobs.expiries import end_expired_break_glass, expire_release_requests
from responder.jobs.flush import stop_evidence, stop_writer
from responder.jobs.housekeeping import forget_old_nonces, forget_revoked_sessions
from responder.jobs.modes import sync_modes
from responder.jobs.reload import load_first
from responder.metrics import Metrics
from responder.redaction import Redactor
from responder.state import DaemonState
from responder.store.db import store_errors
from responder.store.identity import Identity
from responder.store.leader import LeaderLoop
from responder.wiring import Graph, build, kafka_consumers, open_store, resolve_dsn

log = structlog.get_logger("responder")

HTTP_CLOSE_S = 1.0  # open keep-alive connections get this long once intake has stopped
EXPIRY_CHECK_S = 1.0  # how often the expiry, mode and housekeeping jobs look


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
        self.graph: Graph | None = None
        self.state: DaemonState | None = None
        self.port: int | None = None
        self.replica_id = ""
        self._dsn = ""
        self._runner: web.AppRunner | None = None
        self.kafka: KafkaIntake | None = None
        self.metrics_intake: MetricsIntake | None = None
        # What start acquires, in four phases; shutdown releases each as one of its steps.
        self._core = contextlib.AsyncExitStack()  # store, replica name, writer, clients
        self._http = contextlib.AsyncExitStack()
        self._intake = contextlib.AsyncExitStack()  # Kafka consumers
        self._jobs = contextlib.AsyncExitStack()

    @property
    def reconciler(self) -> Reconciler | None:
        return self.graph.reconciler if self.graph is not None else None

    @property
    def checkpointer(self) -> Checkpointer | None:
        return self.graph.checkpointer if self.graph is not None else None

    async def run(self) -> None:
        """Install the signal handlers, start, serve until a signal, shut down."""
        self.install_signal_handlers()
        try:
            await self.start()
            runtime.settle_heap()
            if self.should_exit.is_set():
                log.info("stop requested during start-up; shutting down")
            else:
                await self.should_exit.wait()
        finally:
            await self.shutdown()

    def install_signal_handlers(self) -> None:
        """The handlers go in before anything starts, so that a signal during the embedded
        store's start or the migrations does not get the default action (death, even for
        SIGHUP): SIGTERM and SIGINT stop the daemon in order once start-up has ended, and
        SIGHUP reloads the rules once the first table is in force."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)

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
        """Load rules, open the store, wire the parts, listen, consume, start the jobs."""
        s = self.settings
        rules = load_first(s, self.metrics, self.redactor)
        notary = load_notary(s)  # before the store: production refuses to start without a key
        self._dsn = await resolve_dsn(s)
        pool = await open_store(self._dsn, self._core)
        identity = await self._take_name()
        graph = await build(s, metrics=self.metrics, redactor=self.redactor, rules=rules,
                            notary=notary, pool=pool, replica_id=self.replica_id,
                            holds_name=lambda: identity.holds, stack=self._core)
        self.graph, self.state = graph, graph.state
        self._spawn(graph.writer.run(), "writer", stop_writer(graph.writer), into=self._core)
        await self._listen(graph.state)
        await self._consume(graph.state)
        resumed = await graph.executor.recover()
        for job in self._jobs_to_run(graph):
            self._spawn(job.run(), job.name, job.stop)
        if not s.access.webhook_tokens:
            log.warning("no webhook tokens configured: every webhook will be refused")
        log.info("listening", version=__version__, address=f"{s.web.host}:{self.port}",
                 replica=self.replica_id,
                 rules=len(rules.rules), rules_hash=rules.bundle_hash,
                 rules_signed_hash=rules.signed_hash, resumed=resumed)

    def _jobs_to_run(self, g: Graph) -> list[Job]:
        """Every background job of this replica, in start order (stopped in reverse)."""
        s, modes, writer, pool = self.settings, g.state.modes, g.writer, g.state.pool
        return [
            # First: a dead replica's steps are taken over when its session ends.
            Job("liveness", functools.partial(liveness.watch, self._identity, g.executor,
                                              self._dsn)),
            Job("sweeper", functools.partial(g.executor.sweep, s.steps.sweep_interval_s)),
            Job("resumer", Resumer(writer, g.rules, modes, g.executor, g.evidence.touch).run),
            *([Job("outbox", g.outbox.run)] if s.evidence.sinks else []),
            Job("evidence", g.evidence.run, stop_evidence(g.evidence)),
            periodic("modes-sync", EXPIRY_CHECK_S, functools.partial(sync_modes, modes, pool)),
            periodic("break-glass-expiry", EXPIRY_CHECK_S,
                     functools.partial(end_expired_break_glass, modes, writer)),
            periodic("nonce-prune", EXPIRY_CHECK_S,
                     functools.partial(forget_old_nonces, writer, s.intake.event_window_s)),
            periodic("session-prune", EXPIRY_CHECK_S,
                     functools.partial(forget_revoked_sessions, pool)),
            periodic("release-expiry", EXPIRY_CHECK_S,
                     functools.partial(expire_release_requests, writer)),
            *self._leader("reconciler", s.steps.reconcile_interval_s, g.reconciler.run),
            Job("checkpoint-sev1", g.checkpointer.after_containment),
            *self._leader("checkpointer", s.audit.checkpoint_interval_s, g.checkpointer.every),
            Job("reload-on-sighup",
                functools.partial(g.reloader.on_signal, self._reload_requested)),
        ]

    def _leader(self, role: str, interval_s: float,
                work: Callable[[float], Coroutine[Any, Any, None]]) -> list[Job]:
        """Work that runs every ``interval_s`` on one replica at a time (store/leader.py);
        none when the interval is 0."""
        if interval_s <= 0:
            return []
        gauge = self.metrics.leader.labels(role)
        loop = LeaderLoop(self._dsn, role, functools.partial(work, interval_s),
                          check_s=self.settings.steps.leader_check_s,
                          on_change=lambda is_leader: gauge.set(int(is_leader)))
        return [Job(role, loop.run)]

    async def _take_name(self) -> Identity:
        s = self.settings
        identity = Identity(self._dsn, s.data_dir, check_s=s.steps.leader_check_s)
        self.replica_id = await identity.take(s.steps.replica_id)
        # Released last: the name stays held until this process has stopped claiming.
        self._core.push_async_callback(identity.release)
        self._spawn(identity.keep(), "identity", into=self._core)
        self._identity = identity
        return identity

    async def _listen(self, state: DaemonState) -> None:
        s = self.settings
        self._runner = web.AppRunner(build_app(state), handle_signals=False,
                                     access_log=None, shutdown_timeout=HTTP_CLOSE_S,
                                     keepalive_timeout=s.web.http_header_timeout_s)
        await self._runner.setup()
        self._http.push_async_callback(self._runner.cleanup)
        await CappedSite(self._runner, s.web.host, s.web.port,
                         max_connections=s.web.http_max_connections,
                         on_refused=self.metrics.connections_refused.inc).start()
        self.port = self._runner.addresses[0][1]

    async def _consume(self, state: DaemonState) -> None:
        for consumer in kafka_consumers(self.settings, state):
            if isinstance(consumer, MetricsIntake):
                self.metrics_intake, name = consumer, "kafka-metrics"
            else:
                self.kafka, name = consumer, "kafka-intake"
            await consumer.start()
            self._intake.push_async_callback(consumer.stop)
            self._spawn(consumer.run(), name, into=self._intake)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, stop: Stop | None = None,
               *, into: contextlib.AsyncExitStack | None = None) -> None:
        """Run a background task and stop it at shutdown with its phase (newest first)."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_ended)
        (into or self._jobs).push_async_callback(stop or stop_task, task)

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

    async def shutdown(self) -> None:
        """Stop in order, under the shutdown deadline. Every step runs, also after a start
        that ended half-way (a phase that never started has nothing to release)."""
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
            # 4. Hand our step leases on now, so another replica need not wait them out.
            await self._let_go(state)
        await _close_in_order(
            self._jobs,  # 5. The background jobs, newest first; evidence seals what waits.
            self._intake,  # 6. Kafka: offsets need no flush, each batch is committed once
                           #    it is recorded.
            self._http,  # 7. The HTTP site; open keep-alive connections get HTTP_CLOSE_S.
            self._core,  # 8. Flush queued writes (bounded), close the clients, give up
                         #    the replica's name, close the pool.
        )
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

    @staticmethod
    async def _let_go(state: DaemonState) -> None:
        try:
            async with store_errors():
                released = await state.executor.let_go()
        except StoreError as e:
            log.warning("step leases not released; they run out by themselves", error=str(e))
        else:
            if released:
                log.info("step leases released for other replicas", steps=released)


async def _close_in_order(*stacks: contextlib.AsyncExitStack) -> None:
    """Close each stack in the order given; a failing one does not keep the next open."""
    async with contextlib.AsyncExitStack() as outer:
        for stack in reversed(stacks):
            outer.push_async_callback(stack.aclose)
