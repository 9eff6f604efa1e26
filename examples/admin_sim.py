"""A small generic admin API for the rule packs' targets (gateway, briefcase, edge, market
data), so `make run` and the tests have somewhere to send their calls.

Every service lives under its own prefix (``/gateway``, ``/edge``...). A PUT, POST or PATCH
of a JSON object to ``/<service>/admin/...`` stores it; a GET of the same path returns it,
so read-backs agree. A few status documents (the gateway's policy bundle, the edge's
``/metrics/reasons``) are there from the start, and a POST to ``.../admin/forensics/preserve``
answers with a reference to a preserved copy. ``Idempotency-Key`` is honoured, and
``/_sim/state`` shows every call.

Run: ``python -m examples.admin_sim --listen 127.0.0.1:9097 --token A --token B``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from examples import sim_persist

STATUS_DOCS: dict[str, dict[str, Any]] = {
    "/gateway/admin/policy/bundle": {
        "bundle_hash": "sha256:5f1c0e3a9d7b2c4e8f6a1b3d5c7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e",
        "version": "2026-11-20.1"},
    # The services' own counters, which their runbooks read instead of Prometheus.
    "/edge/metrics/reasons": {"window": "15m", "denials": {
        "replay_nonce_reused": 412, "tenant_mismatch": 37, "signature_invalid": 5}},
    "/edge/admin/status": {"mode": "NORMAL", "replay_guard": "up", "tenants_closed": []},
    "/api/metrics/reasons": {"window": "15m", "denials": {
        "throttled": 1200, "authz_denied": 340, "quota_exceeded": 12}},
    "/api/metrics/errors": {"window": "5m", "by_route": {"/v1/orders": {"500": 41, "503": 7}}},
    "/briefcase/admin/sync/status": {"last_success": "2026-11-30T22:10:04Z",
                                     "consecutive_failures": 14, "policy_version": "p-381"},
}
PRESERVE = "/admin/forensics/preserve"
"""A POST here asks the service to preserve its data directory and store; it answers with
a reference to the preserved copy (and keeps nothing else)."""


@dataclass
class SimState:
    tokens: tuple[str, ...]
    docs: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(STATUS_DOCS))
    calls: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    """Path prefixes whose changes answer 503 (tests make a control fail with this)."""
    state_file: Path | None = None  # documents kept across restarts (the demo)


STATE = web.AppKey("state", SimState)


def _authorised(request: web.Request, state: SimState) -> bool:
    given = request.headers.get("Authorization", "").encode()
    return any(hmac.compare_digest(given, f"Bearer {t}".encode()) for t in state.tokens)


async def change(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request, state):
        return web.json_response({"error": "unauthorized"}, status=401)
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = None
    key = request.headers.get("Idempotency-Key")
    call = {"method": request.method, "path": request.path, "body": body,
            "idempotency_key": key, "applied": False}
    state.calls.append(call)
    if key is not None and key in state.replies:
        return web.json_response({**state.replies[key], "replayed": True})
    if any(request.path.startswith(p) for p in state.failing):
        return web.json_response({"error": "injected fault"}, status=503)
    if not isinstance(body, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    if request.method == "POST" and request.path.endswith(PRESERVE):
        body = _preserved(request.path, body, len(state.calls))
    state.docs[request.path] = body
    sim_persist.save(state.state_file, state.docs)
    call["applied"] = True
    if key is not None:
        state.replies[key] = body
    return web.json_response(body)


def _preserved(path: str, asked: dict[str, Any], n: int) -> dict[str, Any]:
    service = path.split("/")[1]
    reference = f"{service}-preserve-{n:06d}"
    return {"reference": reference, "preserved": ["data-dir", "store"],
            "sha256": hashlib.sha256(json.dumps([reference, asked], sort_keys=True).encode())
            .hexdigest(), "asked": asked}


async def read(request: web.Request) -> web.Response:
    state = request.app[STATE]
    # Counters under /metrics are open, as a service's metrics endpoint usually is.
    is_metrics = request.path.split("/")[2:3] == ["metrics"]
    if not is_metrics and not _authorised(request, state):
        return web.json_response({"error": "unauthorized"}, status=401)
    doc = state.docs.get(request.path)
    if doc is None:
        return web.json_response({"error": "nothing set here yet"}, status=404)
    return web.json_response(doc)


async def sim_state(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"calls": state.calls, "docs": state.docs})


def make_app(tokens: list[str], state_file: Path | None = None) -> web.Application:
    """The simulator as an aiohttp application, accepting any of the tokens."""
    app = web.Application()
    kept = {k: v for k, v in sim_persist.load(state_file).items() if isinstance(v, dict)}
    app[STATE] = SimState(tuple(tokens), docs={**STATUS_DOCS, **kept}, state_file=state_file)
    app.router.add_get("/_sim/state", sim_state)
    path = "/{service:[a-z0-9-]+}/admin/{rest:.+}"
    for method in ("PUT", "POST", "PATCH"):
        app.router.add_route(method, path, change)
    app.router.add_get(path, read)
    app.router.add_get("/{service:[a-z0-9-]+}/metrics/reasons", read)
    app.router.add_get("/{service:[a-z0-9-]+}/metrics/errors", read)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9097")
    parser.add_argument("--token", action="append", required=True,
                        help="an accepted bearer token (repeat for several)")
    parser.add_argument("--state-file", type=Path,
                        help="keep the documents in this JSON file across restarts")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(make_app(args.token, args.state_file), host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()
