"""``responder audit ...``: checkpoint, verify, prove, verify-bundle, keygen."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from responder.audit.keys import load_notary, write_key
from responder.audit.note import Signer, Verifier, open_checkpoint
from responder.config import Settings
from responder.errors import AuditChainError, CheckpointInvalid

OFFLINE = ("verify-bundle", "keygen")


def add_parsers(audit_sub: Any) -> None:
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


def run_offline(args: argparse.Namespace) -> int:
    from responder.audit.offline import read_bundle, read_verifier, verify_bundle

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


def _verifier(settings: Settings, key: str | None) -> Verifier:
    from responder.audit.offline import read_verifier

    return read_verifier(key) if key else load_notary(settings, may_generate=False).verifier


def read_notes(path: Path) -> list[tuple[str, str]]:
    """Checkpoint notes in a file or directory: note text, a sink's delivery, a bundle."""
    if path.is_dir():
        found: list[tuple[str, str]] = []
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            found += _notes_in(child, quiet=True)
        return found
    return _notes_in(path, quiet=False)


def _notes_in(path: Path, *, quiet: bool) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointInvalid(f"{path}: cannot read it ({e})") from e
    note: Any = text
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        bundle = data.get("bundle", data) if isinstance(data, dict) else {}
        note = data.get("note") if isinstance(data, dict) and "note" in data else (
            (bundle.get("audit") or {}).get("checkpoint") if isinstance(bundle, dict) else None)
    if isinstance(note, str) and "\n\n" in note:
        return [(str(path), note)]
    if quiet:
        return []
    raise CheckpointInvalid(f"{path}: holds no checkpoint")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from responder.cli import _connect

    conn = await _connect(settings)
    try:
        if args.audit_command == "checkpoint":
            return await _checkpoint(conn, settings, args)
        if args.audit_command == "prove":
            return await _prove(conn, settings, args)
        return await _verify(conn, settings, args)
    except AuditChainError as e:
        print(f"action log BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        await conn.close()


async def _checkpoint(conn: Any, settings: Settings, args: argparse.Namespace) -> int:
    from responder.audit import checkpoints

    if args.new:
        notary = load_notary(settings, may_generate=False)
        await checkpoints.sign_latest(conn, notary, "command", settings.evidence.sinks)
    row = await checkpoints.latest(conn)
    if row is None:
        print("no checkpoint yet (the log is empty, or none was signed)", file=sys.stderr)
        return 1
    sys.stdout.write(row["note"])
    return 0


async def _verify(conn: Any, settings: Settings, args: argparse.Namespace) -> int:
    from responder.audit.verify import check_checkpoint, verify_tree
    from responder.store.actionlog import verify_chain

    chain = await verify_chain(conn)
    print(f"action log OK: {chain.records} records, head {chain.head_hash}")
    report = await verify_tree(conn)
    print(f"tree OK: {report.size} leaves, root {base64.b64encode(report.root).decode()}")
    notes = [n for p in args.checkpoint for n in read_notes(p)]
    if not notes:
        return 0
    verifier = _verifier(settings, args.public_key)
    # Smallest first: the first that fails is where the log stopped matching what was signed.
    opened = []
    for label, note in notes:
        try:
            size = open_checkpoint(note, verifier).size
        except CheckpointInvalid as e:
            raise CheckpointInvalid(f"checkpoint {label}: {e}") from e
        opened.append((size, label, note))
    for _, label, note in sorted(opened):
        held = await check_checkpoint(conn, report, label, note, verifier,
                                      settings.audit.origin)
        print(f"checkpoint {label}: holds (size {held.checkpoint.size}, consistency proof of"
              f" {len(held.proof)} hashes)")
    return 0


async def _prove(conn: Any, settings: Settings, args: argparse.Namespace) -> int:
    from responder.audit.merkle import leaf_hash, verify_inclusion
    from responder.audit.note import Checkpoint
    from responder.store import tree

    if args.checkpoint is not None:
        note = _notes_in(args.checkpoint, quiet=False)[0][1]
        checkpoint = open_checkpoint(note, _verifier(settings, args.public_key))
    else:
        row = await conn.fetchrow("SELECT note FROM checkpoints WHERE tree_size >= $1"
                                  " ORDER BY tree_size DESC LIMIT 1", args.seq)
        if row is None:
            print(f"no stored checkpoint covers record {args.seq} yet (responder audit"
                  " checkpoint --new signs one)", file=sys.stderr)
            return 1
        note = row["note"]
        # Our own store's copy: whoever checks the printed proof checks its signature.
        checkpoint = Checkpoint.parse_body(note.partition("\n\n")[0] + "\n")
    if not 1 <= args.seq <= checkpoint.size:
        raise CheckpointInvalid(f"record {args.seq} is not in a tree of {checkpoint.size}")
    body_text = await conn.fetchval("SELECT body FROM action_log WHERE seq = $1", args.seq)
    if body_text is None:
        raise AuditChainError(f"record {args.seq} is missing")
    proof = await tree.inclusion(conn, args.seq - 1, checkpoint.size)
    leaf = leaf_hash(body_text.encode())
    holds = verify_inclusion(args.seq - 1, checkpoint.size, leaf, proof, checkpoint.root)
    print(json.dumps({"seq": args.seq, "tree_size": checkpoint.size,
                      "leaf_hash": base64.b64encode(leaf).decode(), "record": body_text,
                      "proof": [base64.b64encode(p).decode() for p in proof],
                      "checkpoint": note}, indent=2))
    if not holds:
        print(f"record {args.seq} is NOT included in that checkpoint's tree", file=sys.stderr)
        return 1
    return 0
