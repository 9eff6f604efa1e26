"""With the store unreachable, /v1 answers 503 with a reason and Retry-After, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from responder.daemon import Daemon
from tests.conftest import ADMIN_DSN, ADMIN_TOKEN, VIEWER_TOKEN, Exchange, settings_for, url


class Cable:
    """A TCP relay to PostgreSQL that the test can cut: the server itself is never touched."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, host: str, port: int) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(host, port)
            self._writers += [writer, up_writer]
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self._server = await asyncio.start_server(relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()


async def test_a_store_outage_is_a_503(database: str, rules_dir: Path, exchange: Exchange,
                                       tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Reads and writes on /v1 during an outage answer 503 store_unavailable, counted."""
    cable = Cable()
    await cable.start("127.0.0.1", int(ADMIN_DSN.rpartition(":")[2].partition("/")[0]))
    name = database.rpartition("/")[2]
    daemon = Daemon(settings_for(f"postgresql://postgres@127.0.0.1:{cable.port}/{name}",
                                 rules_dir, data_dir=tmp_path / "data"),
                    registry=CollectorRegistry())
    await daemon.start()
    try:
        await cable.cut()
        calls = [("GET", "/v1/actions", VIEWER_TOKEN, None),
                 ("GET", "/v1/controls", VIEWER_TOKEN, None),
                 ("POST", "/v1/mode", ADMIN_TOKEN, {"mode": "paused", "reason": "outage"}),
                 ("POST", "/v1/break-glass", ADMIN_TOKEN, {"ttl_s": 60, "reason": "outage"})]
        for method, path, token, body in calls:
            async with http.request(method, url(daemon, path), json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                answer = await resp.json(content_type=None)
                assert (resp.status, answer["error"]) == (503, "store_unavailable"), path
                assert resp.headers["Retry-After"] == "5"
        assert daemon.metrics.rejected.labels("api", "store_unavailable")._value.get() == 4
    finally:
        await daemon.shutdown()
