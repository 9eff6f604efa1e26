"""The commands that need neither a store nor a running daemon: check-rules, test-rules,
rules sign|keygen, hash-token, evidence verify, audit verify-bundle|keygen."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from responder.config import load_settings
from responder.errors import CheckpointInvalid

AUDIT_OFFLINE = ("verify-bundle", "keygen")


def names(text: str | None) -> list[str]:
    """A comma-separated list of names (rule packs)."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def check_rules(args: argparse.Namespace) -> int:
    from responder.rules.loader import load_rules

    rules_dir, packs = args.rules_dir, names(args.packs)
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


def test_rules(args: argparse.Namespace) -> int:
    from responder.ruletests.run import run_file, summary

    results = []
    for path in args.files:
        passed, failed, report = run_file(path)
        results.append((path, passed, failed, report))
    lines, ok = summary(results)
    print("\n".join(lines))
    return 0 if ok else 1


def rules_command(args: argparse.Namespace) -> int:
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


def hash_token() -> int:
    from responder.auth import token_sha256

    token = sys.stdin.readline().strip()
    if not token:
        print("responder: no token on standard input", file=sys.stderr)
        return 2
    print(token_sha256(token))
    return 0


def verify_evidence(path: Path) -> int:
    from responder.evidence.export import EvidenceInvalid, verify

    try:
        sealed = verify(path)
    except EvidenceInvalid as e:
        print(f"evidence BROKEN: {e}", file=sys.stderr)
        return 1
    print(f"evidence OK: incident {sealed.incident_id} version {sealed.version},"
          f" digest {sealed.digest}")
    return 0


def audit(args: argparse.Namespace) -> int:
    """``audit keygen`` and ``audit verify-bundle``."""
    from responder.audit.keys import write_key
    from responder.evidence.verify_offline import read_bundle, read_verifier, verify_bundle
    from responder.tlog.note import Signer

    if args.audit_command == "keygen":
        key, pub = write_key(Signer.generate(args.name), args.prefix)
        print(f"wrote {key} (keep it secret) and {pub}:\n{pub.read_text().strip()}")
        return 0
    try:
        report = verify_bundle(read_bundle(args.bundle), read_verifier(args.public_key))
    except CheckpointInvalid as e:
        print(f"bundle REFUSED: {e}", file=sys.stderr)
        return 1
    print(f"bundle OK: incident {report.incident_id} v{report.version}, {report.records}"
          f" records included in {report.checkpoint.origin} at tree size"
          f" {report.checkpoint.size}")
    return 0
