"""The commands that talk to a running daemon over its HTTP API, as the token's principal:
``controls``, ``contain``, ``release``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from responder.config import Settings
from responder.errors import ResponderError


def add_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--url", help="responder's address (default: from RESPONDER_LISTEN)")
    cmd.add_argument("--token-file", type=Path,
                     help="file holding your token (default: the RESPONDER_TOKEN variable)")


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8").strip())
    token = os.environ.get("RESPONDER_TOKEN", "")
    if not token:
        raise ResponderError("set RESPONDER_TOKEN or pass --token-file")
    return token


async def controls(settings: Settings, args: argparse.Namespace) -> int:
    """``controls`` lists what is held; ``contain`` and ``release`` change one key."""
    import aiohttp

    base = (args.url or f"http://{settings.web.listen}").rstrip("/")
    headers = {"Authorization": f"Bearer {_token(args)}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        if args.command == "controls":
            async with http.get(f"{base}/v1/controls") as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    return _api_error(resp.status, body)
            _print_controls(body["controls"], args.output)
            return 0
        payload = {"to_level": args.to_level, "reason": args.reason}
        if args.command == "release":
            payload["ticket"] = args.ticket
        path = f"{base}/v1/controls/{args.control}/{args.key}/{args.command}"
        async with http.post(path, json=payload) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                return _api_error(resp.status, body)
    print(f"{body['control']}[{body['key']}]: {body['from']} -> {body['level']} by {body['by']}")
    return 0


def _print_controls(rows: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        for c in rows:
            print(json.dumps(c, ensure_ascii=False))
        return
    print(f"{'CONTROL':16} {'KEY':14} {'LEVEL':12} {'SINCE (UTC)':19}  SET BY")
    for c in rows:
        by = f"{c['set_kind']}:{c['set_by']}" + (f" ({c['ticket']})" if c["ticket"] else "")
        print(f"{c['control']:16} {c['key']:14} {c['level']:12} "
              f"{c['since'][:19].replace('T', ' '):19}  {by}")


def _api_error(status: int, body: Any) -> int:
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    code = body.get("error", "") if isinstance(body, dict) else ""
    print(f"responder: refused ({status} {code}): {message}", file=sys.stderr)
    return 1
