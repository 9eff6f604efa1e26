"""What a Prometheus user expects of an exporter: /-/healthy and /-/ready, a build_info
series, the process_* metrics, and no *_created series."""

from __future__ import annotations

import aiohttp

from responder import __version__
from tests.conftest import DaemonFactory, url


async def test_prometheus_paths_and_series(make_daemon: DaemonFactory,
                                           http: aiohttp.ClientSession) -> None:
    """/-/healthy and /-/ready answer like /healthz and /readyz; /metrics carries
    responder_build_info and process_*, and no _created series."""
    daemon = await make_daemon()
    for path in ("/-/healthy", "/-/ready", "/healthz", "/readyz"):
        async with http.get(url(daemon, path)) as resp:
            assert resp.status == 200, path
    async with http.get(url(daemon, "/-/ready")) as resp:
        assert (await resp.json())["ready"] is True
    async with http.get(url(daemon, "/metrics")) as resp:
        text = await resp.text()
    assert 'responder_build_info{python="' in text
    assert f'version="{__version__}"}} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert "process_start_time_seconds" in text
    assert [line for line in text.splitlines() if "_created" in line] == []
