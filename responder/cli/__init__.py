"""The ``responder`` command: run, check-rules, audit verify, actions, incidents, ...

argparse, not click or typer: several people add subcommands in parallel, each as a few
lines here with its body in its own module, and argparse is in the standard library.
The bodies live in three rooms by what they need: ``offline`` (nothing but files),
``store`` and ``audit`` (a database connection), ``api`` (a running daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from responder import __version__, runtime
from responder.cli import api, audit, offline, store
from responder.cli.errors import one_line, port_in_use, should_show_traceback
from responder.cli.output import CONFIG_HELP, add_output, globals_everywhere
from responder.config import Settings, load_settings
from responder.errors import ConfigError, FixtureError, ResponderError, RuleError, explain
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
    audit_cmd = sub.add_parser("audit", help="action log integrity")
    _audit_parsers(audit_cmd.add_subparsers(dest="audit_command", required=True))
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
    api.add_options(controls)
    add_output(controls)
    incidents = sub.add_parser("incidents", help="list incidents, newest first, with what"
                               " each holds")
    incidents.add_argument("--limit", type=int, default=20,
                           help="at most this many (default 20)")
    incidents.add_argument("--before", type=int,
                           help="only incidents older than this id (paging)")
    add_output(incidents)
    for name, verb in (("release", "lower a level one stop"), ("contain", "raise a level")):
        cmd = sub.add_parser(name, help=f"{verb} through the API, as the token's principal")
        cmd.add_argument("control", help="the control's name, as in the rules")
        cmd.add_argument("key", help="the control key; '-' for an unkeyed control")
        cmd.add_argument("--to", required=True, dest="to_level", help="the level to set")
        cmd.add_argument("--reason", required=True, help="why, in words (recorded)")
        if name == "release":
            cmd.add_argument("--ticket", required=True, help="the ticket this release answers")
        api.add_options(cmd)
    globals_everywhere(p)
    return p


def _audit_parsers(audit_sub: Any) -> None:
    audit_sub.add_parser("checkpoint", help="print the latest signed checkpoint (a signed"
                         " note) of the action log").add_argument(
        "--new", action="store_true", help="sign one of the tree as it is now first")
    verify = audit_sub.add_parser("verify", help="check the tree against the records and prove"
                                  " the log extends each checkpoint given")
    verify.add_argument("--checkpoint", type=Path, action="append", default=[],
                        metavar="FILE|DIR", help="a checkpoint (note, sink delivery, bundle),"
                        " or a directory of them; repeatable")
    verify.add_argument("--public-key", help="verifier key (text or file; default: the"
                        " configured signing key's)")
    prove = audit_sub.add_parser("prove", help="print the inclusion proof of record SEQ")
    prove.add_argument("seq", type=int, help="the record to prove (its seq in the action log)")
    prove.add_argument("--checkpoint", type=Path, help="prove against this checkpoint"
                       " (default: the latest stored one that covers SEQ)")
    prove.add_argument("--public-key", help="verifier key for --checkpoint")
    bundle = audit_sub.add_parser("verify-bundle", help="check a bundle's checkpoint and"
                                  " proofs offline (no store, no daemon)")
    bundle.add_argument("bundle", type=Path, help="exported .tar.gz, or bundle JSON")
    bundle.add_argument("--public-key", required=True, help="verifier key (text or file)")
    keygen = audit_sub.add_parser("keygen", help="write PREFIX.key and PREFIX.pub, a"
                                  " checkpoint signing key")
    keygen.add_argument("prefix", type=Path, help="write PREFIX.key (secret) and PREFIX.pub")
    keygen.add_argument("--name", default="responder/action-log",
                        help="key name: use the log's origin (RESPONDER_AUDIT_ORIGIN)")


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
    files_only: dict[str, Callable[[], int]] = {
        "check-rules": lambda: offline.check_rules(args),
        "hash-token": offline.hash_token,
        "rules": lambda: offline.rules_command(args),
        "test-rules": lambda: offline.test_rules(args),
    }
    if args.command in files_only:
        return files_only[args.command]()
    if args.command == "evidence" and args.evidence_command == "verify":
        return offline.verify_evidence(args.file)
    if args.command == "audit" and args.audit_command in offline.AUDIT_OFFLINE:
        return offline.audit(args)
    settings = load_settings(args.config)
    if args.command == "run":
        return _run(settings)
    online: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "audit": audit.run,
        "controls": api.controls, "release": api.controls, "contain": api.controls,
        "evidence": store.export_evidence,
        "actions": store.actions,
        "incidents": store.incidents,
        "replay": _replay,
        "outbox": lambda s, a: redrive.run(s, a, store.store_connection),
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
        runtime.run(daemon.run())
    except OSError as e:
        if should_show_traceback():
            raise
        print(one_line(e, settings.web.listen), file=sys.stderr)
        return 1
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from responder.replay.command import run

    return await run(settings, args, store.store_connection, offline.names)
