"""Apply a control level through a target's HTTP admin API, with bounded, idempotent retries."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from responder import __version__, jsontext
from responder.actions.paths import checked_url
from responder.errors import ActionError, ActionPermanentError, ActionTransientError
from responder.metrics import Metrics
from responder.redaction import Redactor
from responder.rules.table import Control

MAX_BODY_KEPT = 2048
READ_BACK_ATTEMPTS = 4
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
BACKOFF_JITTER_S = 0.1


def backoff_s(attempt: int) -> float:
    """The pause after failed attempt ``attempt`` (1 first): doubling from BACKOFF_FIRST_S,
    plus up to BACKOFF_JITTER_S of jitter, at most BACKOFF_MAX_S. A transient failure is
    retried until the deadline has passed; a permanent one is not."""
    jitter = random.uniform(0, BACKOFF_JITTER_S)  # noqa: S311 - spreading retries, not crypto
    return min(BACKOFF_FIRST_S * float(2 ** min(attempt - 1, 32)) + jitter, BACKOFF_MAX_S)


@dataclass
class Attempt:
    status: int | None
    error: str | None
    latency_ms: float


@dataclass
class CallRecord:
    """What was sent and what came back, redacted, for the action log and evidence."""

    method: str
    url: str
    body: Any
    attempts: list[Attempt] = field(default_factory=list)
    response_status: int | None = None
    response_body: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "body": self.body,
            "attempts": [a.__dict__ for a in self.attempts],
            "response": {"status": self.response_status, "body": self.response_body},
        }


class CallFailed(ActionError):
    """Raised after retries are exhausted, carrying the record of every attempt."""

    def __init__(self, cause: ActionError, record: CallRecord) -> None:
        self.cause = cause
        self.record = record
        super().__init__(str(cause))


class AdminClient:
    """One HTTP session for every target; safe to share across tasks."""

    def __init__(self, metrics: Metrics, redactor: Redactor) -> None:
        self._metrics = metrics
        self._redactor = redactor
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"responder/{__version__}"},
            connector=aiohttp.TCPConnector(limit=100),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def apply(self, control: Control, key: str, level: str, idempotency_key: str,
                    deadline_s: float, audit: Mapping[str, str] | None = None) -> CallRecord:
        """Apply the level; retry transient failures until the deadline; raise CallFailed.
        ``audit`` fills the body's audit fields where the control declares them."""
        assert self._session is not None, "start() first"
        path, body = control.render(key, level, audit)
        target = control.target
        url = checked_url(target.name, target.base_url, control.path, path)
        record = CallRecord(control.method, self._redactor.text(str(url)),
                            self._redactor.value(body))
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        if target.token is not None:
            headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
        payload = json.dumps(body).encode() if body is not None else None
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                attempt += 1
                remaining = deadline_s - (time.monotonic() - started)
                timeout = max(0.05, min(target.timeout_s, remaining))
                try:
                    await self._once(control, url, headers, payload, timeout, record)
                except ActionTransientError:
                    if time.monotonic() - started >= deadline_s:
                        raise
                else:
                    return record
                await asyncio.sleep(backoff_s(attempt))
        except ActionError as e:
            raise CallFailed(e, record) from e

    async def read(self, control: Control, key: str, timeout_s: float) -> tuple[str | None,
                                                                                CallRecord]:
        """The level the target reports for a key (None if its answer names no level)."""
        assert self._session is not None, "start() first"
        assert control.read_path is not None
        url = checked_url(control.target.name, control.target.base_url, control.read_path,
                          control.render_read(key))
        record = CallRecord(control.read_method or "GET", self._redactor.text(str(url)), None)
        headers = {}
        if control.target.token is not None:
            headers["Authorization"] = f"Bearer {control.target.token.get_secret_value()}"
        t0 = time.monotonic()
        try:
            async with self._session.request(
                record.method, url, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=min(timeout_s, control.target.timeout_s)),
            ) as resp:
                record.response_status = resp.status
                text = (await resp.content.read(MAX_BODY_KEPT)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as e:
            reason = self._redactor.text(f"{type(e).__name__}: {e}")
            record.attempts.append(Attempt(None, reason, (time.monotonic() - t0) * 1000))
            raise ActionTransientError(f"{control.target.name}: read failed: {reason}") from e
        record.attempts.append(Attempt(record.response_status, None,
                                       (time.monotonic() - t0) * 1000))
        record.response_body = self._redactor.text(text)
        if not 200 <= resp.status < 300:
            raise ActionTransientError(f"{control.target.name} answered {resp.status} to a read")
        try:
            answer = jsontext.loads(text)
        except jsontext.JSONTextError:
            return None, record
        return control.level_in(answer), record

    async def verify(self, control: Control, key: str, level: str,
                     deadline_s: float) -> tuple[bool, str | None, list[CallRecord]]:
        """Read the level back until it matches or the (short) deadline passes."""
        records: list[CallRecord] = []
        observed: str | None = None
        started = time.monotonic()
        for attempt in range(READ_BACK_ATTEMPTS):
            remaining = deadline_s - (time.monotonic() - started)
            if remaining <= 0:
                break
            try:
                observed, record = await self.read(control, key, remaining)
                records.append(record)
            except ActionTransientError:
                observed = None
            if observed == level:
                return True, observed, records
            await asyncio.sleep(min(0.05 * 2**attempt, max(0.0, remaining)))
        return False, observed, records

    async def _once(self, control: Control, url: URL, headers: dict[str, str],
                    payload: bytes | None, timeout_s: float, record: CallRecord) -> None:
        assert self._session is not None
        t0 = time.monotonic()
        status: int | None = None
        try:
            async with self._session.request(
                control.method, url, data=payload, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False,
            ) as resp:
                status = resp.status
                text = (await resp.content.read(MAX_BODY_KEPT)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as e:
            latency = (time.monotonic() - t0) * 1000
            reason = self._redactor.text(f"{type(e).__name__}: {e}" if str(e)
                                         else type(e).__name__)
            record.attempts.append(Attempt(None, reason, latency))
            raise ActionTransientError(f"{control.target.name}: {reason}") from e
        finally:
            self._metrics.admin_seconds.labels(control.target.name).observe(
                time.monotonic() - t0)
        latency = (time.monotonic() - t0) * 1000
        record.attempts.append(Attempt(status, None, latency))
        record.response_status = status
        record.response_body = self._redactor.text(text)
        if 200 <= status < 300:
            return
        message = f"{control.target.name} answered {status} to {control.method} {record.url}"
        if status >= 500 or status in (408, 429):
            raise ActionTransientError(message)
        raise ActionPermanentError(message)
