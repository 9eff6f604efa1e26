"""No label value moves an admin call off the path template its control declares.

Hypothesis generates label values (dot segments, percent signs, slashes, any text) and
sends each through the real HTTP client to a small recording server, which notes the raw
path every request arrived at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from responder.actions.admin_http import AdminClient
from responder.actions.paths import OffTemplate
from responder.errors import ActionPermanentError
from responder.metrics import Metrics
from responder.redaction import Redactor
from responder.rules.schema import DEFAULT_KEY_PATTERN
from responder.rules.table import Control, Target
from tests.conftest import free_port
from tests.live_stack import Loop

TEMPLATE = "/admin/tenants/{key}/mode"
SHAPE = re.compile(r"/edge/admin/tenants/[^/?#]+/mode")
LABELS = st.one_of(
    st.sampled_from([".", "..", "%2e", "%2E%2E", ".%2e", "a/..", "../mode", "a/b", "?x",
                     "#", "t-1", "..."]),
    st.text(alphabet=st.sampled_from("./%2eE?#a-_:"), min_size=1, max_size=8),
    st.text(min_size=1, max_size=16),
)


@dataclass
class Seen:
    raw_paths: list[str] = field(default_factory=list)


SEEN = web.AppKey("seen", Seen)


@web.middleware
async def _record(request: web.Request, handler: object) -> web.StreamResponse:
    """Answer every request, whatever its path (no route could match all of them)."""
    request.app[SEEN].raw_paths.append(request.raw_path)
    return web.json_response({"mode": "FAIL_CLOSED"})


@dataclass
class Harness:
    loop: Loop
    seen: Seen
    client: AdminClient
    base_url: str

    def control(self, key_pattern: str) -> Control:
        target = Target("edge", self.base_url, None, 2.0)
        return Control("tenant-mode", target, ("OPEN", "FAIL_CLOSED"), "tenant",
                       re.compile(key_pattern), "PUT", TEMPLATE, {"mode": "{level}"},
                       read_path=TEMPLATE, read_field="mode")

    def call(self, control: Control, key: str) -> str | None:
        """The raw path the request arrived at, or None if it was refused before sending."""
        before = len(self.seen.raw_paths)
        try:
            self.loop.run(self.client.apply(control, key, "FAIL_CLOSED", "k", 2.0))
        except OffTemplate:
            assert len(self.seen.raw_paths) == before, "refused, yet sent"
            return None
        [path] = self.seen.raw_paths[before:]
        return path


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    loop = Loop()
    app = web.Application(middlewares=[_record])
    app[SEEN] = Seen()
    runner = web.AppRunner(app, access_log=None)
    port = free_port()

    async def start() -> AdminClient:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = AdminClient(Metrics(CollectorRegistry()), Redactor())
        await client.start()
        return client

    client = loop.run(start())
    yield Harness(loop, app[SEEN], client, f"http://127.0.0.1:{port}/edge")
    loop.run(client.close())
    loop.run(runner.cleanup())
    loop.close()


def test_dot_segments_are_refused_by_the_default_key_pattern() -> None:
    """The default key pattern refuses "." and "..", and still accepts dotted names."""
    pattern = re.compile(DEFAULT_KEY_PATTERN)
    assert pattern.fullmatch(".") is None and pattern.fullmatch("..") is None
    assert pattern.fullmatch("tenant.eu-1") and pattern.fullmatch("...")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=LABELS)
def test_a_default_keyed_call_never_leaves_its_template(harness: Harness, label: str) -> None:
    """A key the default pattern accepts reaches the template's endpoint; any other key is
    never sent at all (the planner refuses it, and the client would too)."""
    control = harness.control(DEFAULT_KEY_PATTERN)
    if control.key_pattern.fullmatch(label) is None:
        return
    path = harness.call(control, label)
    assert path is not None and SHAPE.fullmatch(path), (label, path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=LABELS)
def test_a_lax_key_pattern_still_cannot_move_a_call(harness: Harness, label: str) -> None:
    """With a key pattern that accepts anything, a call either arrives on the template's
    shape or is refused before sending, as a permanent error (so the step escalates)."""
    control = harness.control(r"(?s).+")
    path = harness.call(control, label)
    if path is not None:
        assert SHAPE.fullmatch(path), (label, path)
    assert issubclass(OffTemplate, ActionPermanentError)


def test_a_dot_dot_key_is_refused_before_any_call(harness: Harness) -> None:
    """The reported case: ``..`` would have turned the tenant path into ``/admin/mode``."""
    control = harness.control(r"(?s).+")
    assert harness.call(control, "..") is None
    with pytest.raises(OffTemplate):
        harness.loop.run(harness.client.read(control, "..", 2.0))


def test_retry_pauses_double_from_a_tenth_of_a_second_to_two() -> None:
    from responder.actions.admin_http import backoff_s

    for attempt, low in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6)]:
        assert low <= backoff_s(attempt) <= low + 0.1
    assert backoff_s(6) == backoff_s(1000) == 2.0
