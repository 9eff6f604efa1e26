"""Where bundles and pages go: a directory, a generic webhook, a Slack-style webhook.

Every delivery carries its idempotency key, so a delivery retried after a crash or a lost
answer is taken once by a receiver that honours the key (the file sink names its file by it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from typing import Any, Protocol

import aiohttp

from responder.config import SinkSpec

TIMEOUT_S = 10.0
DELIVERY_DEADLINE_S = 2 * TIMEOUT_S
"""A Kafka delivery's whole time, its producer's start included."""


class DeliveryError(Exception):
    """The sink did not take the delivery; it will be retried."""


class Sink(Protocol):
    name: str

    async def deliver(self, key: str, kind: str, payload: dict[str, Any]) -> None: ...


class FileSink:
    def __init__(self, spec: SinkSpec) -> None:
        assert spec.dir is not None
        self.name = spec.name
        self.dir = spec.dir

    async def deliver(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            target = self.dir / f"{key}.json"
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
            os.replace(tmp, target)  # whole file or none, and the same name on a retry
        except OSError as e:
            raise DeliveryError(f"{self.name}: {e.strerror}") from e


class WebhookSink:
    def __init__(self, spec: SinkSpec, session: aiohttp.ClientSession, *, slack: bool) -> None:
        assert spec.url is not None
        self.name = spec.name
        self.url = spec.url
        self.secret = spec.hmac_secret
        self.slack = slack
        self.session = session

    async def deliver(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        body = json.dumps({"text": payload["summary"]} if self.slack else payload,
                          sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   "X-Responder-Kind": kind}
        if self.secret is not None:
            mac = hmac.new(self.secret.get_secret_value().encode(), body, hashlib.sha256)
            headers["X-Responder-Signature"] = f"sha256={mac.hexdigest()}"
        try:
            async with self.session.post(self.url, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as r:
                if not 200 <= r.status < 300:
                    raise DeliveryError(f"{self.name}: answered {r.status}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise DeliveryError(f"{self.name}: {type(e).__name__}") from e


class KafkaSink:
    """Publishes each delivery to a topic, keyed (and headed) by its idempotency key.

    The outbox hands over every due row at once, so deliveries share one producer: it is
    started under a lock and used only once started, a failed delivery stops only the
    producer it used (not a newer one another delivery started), and every delivery has a
    deadline. Without these, a delivery during a broker outage could send through a
    producer whose start had failed and wait for ever, and the outbox with it.
    """

    def __init__(self, spec: SinkSpec) -> None:
        assert spec.bootstrap is not None
        assert spec.topic is not None
        self.name = spec.name
        self.bootstrap = spec.bootstrap
        self.topic = spec.topic
        self._producer: Any = None
        self._starting = asyncio.Lock()

    async def deliver(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        from aiokafka.errors import KafkaError

        producer = None
        try:
            async with asyncio.timeout(DELIVERY_DEADLINE_S):
                producer = await self._started()
                await producer.send_and_wait(
                    self.topic, json.dumps(payload, sort_keys=True).encode(),
                    key=key.encode(),
                    headers=[("idempotency-key", key.encode()), ("kind", kind.encode())])
        except (KafkaError, OSError, TimeoutError) as e:
            await self._drop(producer)
            raise DeliveryError(f"{self.name}: {type(e).__name__}: {e}") from e

    async def _started(self) -> Any:
        from aiokafka import AIOKafkaProducer

        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                            request_timeout_ms=int(TIMEOUT_S * 1000))
                try:
                    await producer.start()
                except BaseException:
                    await _stop_quietly(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _drop(self, producer: Any) -> None:
        """Stop the producer a failed delivery used, unless it was replaced meanwhile."""
        if producer is not None and producer is self._producer:
            self._producer = None
            await _stop_quietly(producer)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)


async def _stop_quietly(producer: Any) -> None:
    try:
        await producer.stop()
    except Exception:  # closing a broken producer must not mask the delivery error
        return


def build_sinks(specs: list[SinkSpec], session: aiohttp.ClientSession) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    for spec in specs:
        if spec.kind == "file":
            sinks[spec.name] = FileSink(spec)
        elif spec.kind == "kafka":
            sinks[spec.name] = KafkaSink(spec)
        else:
            sinks[spec.name] = WebhookSink(spec, session, slack=spec.kind == "slack")
    return sinks


