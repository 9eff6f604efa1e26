"""The ``responder`` command: run, check-rules, audit verify, actions, incidents, ...

argparse, not click or typer: several people add subcommands in parallel, each as a few
lines here with its body in its own module, and argparse is in the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from responder import __version__, cli_incidents
from responder.audit import commands as audit_commands
from responder.cli_errors import one_line, port_in_use, should_show_traceback
from responder.cli_output import CONFIG_HELP, add_output, globals_everywhere
from responder.config import Settings, load_settings
from responder.errors import (
    ConfigError,
    FixtureError,
    ResponderError,
    RuleError,
    explain,
)
from responder.evidence import redrive
from responder.logging import configure_logging
from responder.redaction import Redactor


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="responder", description="Automatic first response.")
    p.add_argument("--version", action="version", version=f"responder {__version__}")
    p.add_argument("--config", type=Path, help=CONFIG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the daemon")
    check = sub.add_parser("check-rules", help="validate a rules directory")
    check.add_argument("rules_dir", nargs="?", type=Path,
                       help="the rules directory (default: RESPONDER_RULES_DIR)")
    check.add_argument("--skip-secrets", action="store_true",
                       help="do not require target tokens to be present")
    check.add_argument("--packs", help="comma-separated rule packs to enable ('all': every"
                       " pack; default: RESPONDER_RULE_PACKS)")
    audit = sub.add_parser("audit", help="action log integrity")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_commands.add_parsers(audit_sub)
    _actions_parser(sub)
    evidence = sub.add_parser("evidence", help="export and verify forensic bundles")
    evidence_sub = evidence.add_subparsers(dest="evidence_command", required=True)
    export = evidence_sub.add_parser("export", help="write ID's bundle as .tar.gz + .sha256")
    export.add_argument("incident", type=int, help="the incident's id")
    export.add_argument("--out", type=Path, required=True, help="the folder to write to")
    export.add_argument("--version", type=int, help="a given version (default: the latest)")
    check = evidence_sub.add_parser("verify", help="check an exported .tar.gz")
    check.add_argument("file", type=Path, help="the exported .tar.gz")
    test_rules = sub.add_parser("test-rules", help="run rule fixtures (promtool-style)")
    test_rules.add_argument("files", nargs="+", type=Path, help="fixture files (YAML)")
    _replay_parser(sub)
    redrive.add_parser(sub)
    rules = sub.add_parser("rules", help="rule bundle signatures (strict mode)")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    sign = rules_sub.add_parser("sign", help="write DIR/bundle.sig, an Ed25519 signature")
    sign.add_argument("rules_dir", type=Path, help="the rules directory to sign")
    sign.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    keygen = rules_sub.add_parser("keygen", help="write PREFIX.key and PREFIX.pub")
    keygen.add_argument("prefix", type=Path, help="path and name stem of the two files")
    sub.add_parser("hash-token", help="print the SHA-256 of a token read from standard input,"
                   " for a principal's token_sha256")
    controls = sub.add_parser("controls", help="list contained control keys (via the API)")
    _api_options(controls)
    add_output(controls)
    cli_incidents.add_parser(sub)
    for name, verb in (("release", "lower a level one stop"), ("contain", "raise a level")):
        cmd = sub.add_parser(name, help=f"{verb} through the API, as the token's principal")
        cmd.add_argument("control", help="the control's name, as in the rules")
        cmd.add_argument("key", help="the control key; '-' for an unkeyed control")
        cmd.add_argument("--to", required=True, dest="to_level", help="the level to set")
        cmd.add_argument("--reason", required=True, help="why, in words (recorded)")
        if name == "release":
            cmd.add_argument("--ticket", required=True, help="the ticket this release answers")
        _api_options(cmd)
    globals_everywhere(p)
    return p


def _actions_parser(sub: Any) -> None:
    actions = sub.add_parser("actions", help="show the action log")
    actions.add_argument("--rule", help="only this rule's records")
    actions.add_argument("--control", help="only records about this control")
    actions.add_argument("--incident", type=int, help="only this incident's records")
    actions.add_argument("--kind", help="only records of this kind (intent, outcome, ...)")
    actions.add_argument("--correlation-id", help="one alert delivery's records, arrival to"
                         " last action")
    actions.add_argument("--limit", type=int, default=50, help="at most this many (default"
                         " 50, the newest)")
    actions.add_argument("--json", action="store_true", help="the same as -o json")
    add_output(actions)


def _replay_parser(sub: Any) -> None:
    rp = sub.add_parser("replay", help="run a candidate rule table over past alerts in shadow"
                        " mode and print what would be done differently (exit 1 if anything)")
    rp.add_argument("--rules", type=Path, required=True, help="the candidate rules directory")
    rp.add_argument("--since", help="RFC 3339 time, or a duration back from now (24h, 7d)")
    rp.add_argument("--from", dest="from_file", type=Path,
                    help="alerts and/or metric samples from a file (Alertmanager payloads,"
                         " responder's alert shape, the metrics topic's sample shapes; JSON or"
                         " JSON lines) instead of the store")
    rp.add_argument("--baseline", type=Path, help="with --from: the table to compare with"
                    " (default: RESPONDER_RULES_DIR)")
    rp.add_argument("--packs", help="rule packs enabled in both tables (default:"
                    " RESPONDER_RULE_PACKS)")
    rp.add_argument("--json", action="store_true", help="the report as one JSON object")


def _api_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--url", help="responder's address (default: from RESPONDER_LISTEN)")
    cmd.add_argument("--token-file", type=Path,
                     help="file holding your token (default: the RESPONDER_TOKEN variable)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"responder: invalid setting: {e}", file=sys.stderr)
        return 2
    except ResponderError as e:
        print(explain(e), file=sys.stderr)
        return 2 if isinstance(e, RuleError | FixtureError) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # an operator gets one line, not a traceback
        if should_show_traceback():
            raise
        print(one_line(e), file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    # Commands that need no settings and no store first.
    offline: dict[str, Callable[[], int]] = {
        "check-rules": lambda: _check_rules(args),
        "hash-token": _hash_token,
        "rules": lambda: _rules_command(args),
        "test-rules": lambda: _test_rules(args),
    }
    if args.command in offline:
        return offline[args.command]()
    if args.command == "evidence" and args.evidence_command == "verify":
        return _verify_evidence(args.file)
    if args.command == "audit" and args.audit_command in audit_commands.OFFLINE:
        return audit_commands.run_offline(args)
    settings = load_settings(args.config)
    if args.command == "run":
        return _run(settings)
    online: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "audit": audit_commands.run,
        "controls": _controls, "release": _controls, "contain": _controls,
        "evidence": _export_evidence,
        "actions": _actions,
        "incidents": lambda s, a: cli_incidents.run(s, a, _connect),
        "replay": _replay,
        "outbox": lambda s, a: redrive.run(s, a, _connect),
    }
    return asyncio.run(online[args.command](settings, args))


def _run(settings: Settings) -> int:
    from responder.daemon import Daemon

    if port_in_use(settings.web.host, settings.web.port):
        print(one_line(OSError(errno.EADDRINUSE, "in use"), settings.web.listen), file=sys.stderr)
        return 1
    configure_logging(Redactor(settings.secret_values()), settings.log_level)
    daemon = Daemon(settings)
    configure_logging(daemon.redactor, settings.log_level)
    try:
        asyncio.run(daemon.run())
    except OSError as e:
        if should_show_traceback():
            raise
        print(one_line(e, settings.web.listen), file=sys.stderr)
        return 1
    return 0


def _check_rules(args: argparse.Namespace) -> int:
    from responder.rules.loader import load_rules

    rules_dir, packs = args.rules_dir, _names(args.packs)
    if rules_dir is None or args.packs is None:
        settings = load_settings(args.config)
        rules_dir = rules_dir or settings.rules.dir
        packs = settings.rules.packs if args.packs is None else packs
    table = load_rules(rules_dir, resolve_secrets=not args.skip_secrets, packs=packs)
    print(f"{rules_dir}: {len(table.rules)} rules, {len(table.controls)} controls,"
          f" {len(table.targets)} targets; bundle {table.bundle_hash}"
          + ("" if table.signed_hash == table.bundle_hash
             else f" (in force; signed over every file: {table.signed_hash})"))
    return 0


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


async def _connect(settings: Settings) -> Any:
    import asyncpg

    from responder.daemon import resolve_dsn
    from responder.store.db import store_errors

    async with store_errors():
        return await asyncpg.connect(await resolve_dsn(settings))


def _summary(record: dict[str, Any]) -> str:
    d = record.get("detail", {})
    kind = record["kind"]
    if kind in ("intent", "outcome"):
        status = d.get("status", "planned")
        return f"{d.get('kind', '')} -> {d.get('level', '')} [{status}]"
    if kind == "alert_received":
        alert = d.get("alert", {})
        name = alert.get("labels", {}).get("alertname", "?")
        return f"{name} {alert.get('status', '')} matched={','.join(d.get('matched_rules', []))}"
    if kind == "already_contained":
        return f"requested {d.get('requested')} held {d.get('held')}"
    for field in ("reason", "note", "scope", "value"):
        if field in d:
            return f"{field}: {d[field]}"
    return ""


async def _actions(settings: Settings, args: argparse.Namespace) -> int:
    from responder.store import queries

    conn = await _connect(settings)
    try:
        total = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM action_log")
        f = queries.ActionFilter(rule_id=args.rule, control=args.control,
                                 incident_id=args.incident, kind=args.kind,
                                 correlation_id=args.correlation_id,
                                 after=max(0, total - args.limit) if not any(
                                     (args.rule, args.control, args.incident, args.kind,
                                      args.correlation_id))
                                 else 0, limit=args.limit)
        records = await queries.list_actions(conn, f)
    finally:
        await conn.close()
    if args.json or args.output == "json":
        for r in records:
            print(json.dumps(r, default=str))
        return 0
    header = (f"{'SEQ':>5}  {'TIME (UTC)':19}  {'KIND':18} {'INC':>4}  {'RULE':26} "
              f"{'CONTROL[KEY]':24} DETAIL")
    print(header)
    for r in records:
        target = f"{r.get('control') or ''}" + (f"[{r['key']}]" if r.get("key") else "")
        print(f"{r['seq']:>5}  {r['at'][:19].replace('T', ' '):19}  {r['kind']:18} "
              f"{r.get('incident_id') or '':>4}  {(r.get('rule_id') or '')[:26]:26} "
              f"{target[:24]:24} {_summary(r)}")
    return 0


def _hash_token() -> int:
    from responder.auth import token_sha256

    token = sys.stdin.readline().strip()
    if not token:
        print("responder: no token on standard input", file=sys.stderr)
        return 2
    print(token_sha256(token))
    return 0


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8").strip())
    token = os.environ.get("RESPONDER_TOKEN", "")
    if not token:
        raise ResponderError("set RESPONDER_TOKEN or pass --token-file")
    return token


async def _controls(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    base = (args.url or f"http://{settings.web.listen}").rstrip("/")
    headers = {"Authorization": f"Bearer {_token(args)}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        if args.command == "controls":
            async with http.get(f"{base}/v1/controls") as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    return _api_error(resp.status, body)
            if args.output == "json":
                for c in body["controls"]:
                    print(json.dumps(c, ensure_ascii=False))
                return 0
            print(f"{'CONTROL':16} {'KEY':14} {'LEVEL':12} {'SINCE (UTC)':19}  SET BY")
            for c in body["controls"]:
                by = f"{c['set_kind']}:{c['set_by']}" + (f" ({c['ticket']})" if c["ticket"]
                                                         else "")
                print(f"{c['control']:16} {c['key']:14} {c['level']:12} "
                      f"{c['since'][:19].replace('T', ' '):19}  {by}")
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


def _api_error(status: int, body: Any) -> int:
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    code = body.get("error", "") if isinstance(body, dict) else ""
    print(f"responder: refused ({status} {code}): {message}", file=sys.stderr)
    return 1


def _rules_command(args: argparse.Namespace) -> int:
    from responder.rules import signing
    from responder.rules.loader import bundle_hash, rule_files

    if args.rules_command == "keygen":
        private, public = signing.keygen(args.prefix)
        print(f"private key {private} (keep it secret), public key {public}")
        return 0
    files = rule_files(args.rules_dir)
    if not files:
        print(f"responder: no rule files in {args.rules_dir}", file=sys.stderr)
        return 2
    digest = bundle_hash(args.rules_dir, files)
    out = signing.sign(args.rules_dir, digest, args.key)
    print(f"signed bundle {digest} ({len(files)} files): {out}")
    return 0


def _test_rules(args: argparse.Namespace) -> int:
    from responder.rules.testing import run_file, summary

    results = []
    for path in args.files:
        passed, failed, report = run_file(path)
        results.append((path, passed, failed, report))
    lines, ok = summary(results)
    print("\n".join(lines))
    return 0 if ok else 1


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from responder.replay.command import run

    return await run(settings, args, _connect, _names)


async def _export_evidence(settings: Settings, args: argparse.Namespace) -> int:
    from responder.evidence.export import Sealed, export

    conn = await _connect(settings)
    try:
        row = await conn.fetchrow(
            "SELECT version, digest, prev_digest, body FROM evidence WHERE incident_id = $1"
            " AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
            args.incident, args.version)
    finally:
        await conn.close()
    if row is None:
        print(f"responder: no evidence for incident {args.incident}", file=sys.stderr)
        return 1
    archive = export(Sealed(args.incident, row["version"], row["digest"], row["prev_digest"],
                            row["body"]), args.out)
    print(f"{archive} (version {row['version']}, bundle digest {row['digest']})")
    return 0


def _verify_evidence(path: Path) -> int:
    from responder.evidence.export import EvidenceInvalid, verify

    try:
        sealed = verify(path)
    except EvidenceInvalid as e:
        print(f"evidence BROKEN: {e}", file=sys.stderr)
        return 1
    print(f"evidence OK: incident {sealed.incident_id} version {sealed.version},"
          f" digest {sealed.digest}")
    return 0
