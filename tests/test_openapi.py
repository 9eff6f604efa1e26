"""The published OpenAPI document: served by the daemon, built from the models that validate,
and held to by the running daemon under schemathesis-generated requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from responder.api import openapi, routes
from tests.conftest import ADMIN_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN
from tests.live_daemon import LiveDaemon, live_daemon

TOKENS = {"viewer": VIEWER_TOKEN, "operator": OPERATOR_TOKEN, "admin": ADMIN_TOKEN}
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    with live_daemon(tmp_path_factory.mktemp("openapi")) as running:
        yield running


def no_undocumented_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, except the two the document promises: /readyz's 503 and a target's 502
    (a busy machine can make the simulated target miss the step deadline)."""
    documented = case.operation.definition.raw["responses"]
    if response.status_code >= 500 and str(response.status_code) not in documented:
        raise AssertionError(f"{response.status_code} from {case.method} {case.path}:"
                             f" {response.text[:300]}")


# The document as built here; the test below checks the daemon serves exactly this.
schema = schemathesis.openapi.from_dict(openapi.document(routes.OPERATIONS))


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_daemon_keeps_to_its_published_api(live: LiveDaemon, case: Any) -> None:
    """Generated requests, valid and not, never get a 5xx, and every answer has a documented
    status, media type and shape."""
    role = case.operation.definition.raw.get("x-role")
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    case.call_and_validate(base_url=live.url, headers=headers, checks=[
        no_undocumented_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance, negative_data_rejection])


async def _get_json(address: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(address) as resp:
        return resp.status, await resp.json()


def test_the_document_is_served_and_lists_every_route(live: LiveDaemon) -> None:
    """GET /v1/openapi.json answers the document, which names every routed /v1 operation and
    nothing that is not routed."""
    status, doc = live.run(_get_json(f"{live.url}{openapi.PATH}"))
    assert status == 200
    assert doc == openapi.document(routes.OPERATIONS)
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    runner = live.daemon._runner
    assert runner is not None
    app = runner.app
    routed = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    assert documented <= routed
    assert {(m, p) for m, p in routed if p.startswith("/v1/")} == {
        (m, p) for m, p in documented if p.startswith("/v1/")}

def test_request_bodies_are_the_validating_models() -> None:
    """Each body schema in the document is the JSON schema of the model its handler parses."""
    doc = openapi.document(routes.OPERATIONS)
    for op in routes.OPERATIONS:
        if op.body is None:
            continue
        ref = doc["paths"][op.path][op.method.lower()]["requestBody"]["content"][
            "application/json"]["schema"]["$ref"]
        published = doc["components"]["schemas"][ref.rpartition("/")[2]]
        assert published == op.body.model_json_schema(ref_template=openapi.REF)



def test_the_document_is_valid_openapi_3_1() -> None:
    """The document passes the OpenAPI 3.1 meta-schema (schemathesis ships it)."""
    from schemathesis.specs.openapi import definitions

    definitions.OPENAPI_31_VALIDATOR.validate(openapi.document(routes.OPERATIONS))
