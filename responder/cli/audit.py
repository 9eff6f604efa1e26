"""``responder audit checkpoint|verify|prove``: the audit commands that read the store
(``verify-bundle`` and ``keygen`` need none: they are in ``cli.offline``)."""

from __future__ import annotations

import argparse
import base64
import json
import sys

from responder.audit.keys import load_notary
from responder.audit.note_files import notes_in, read_notes
from responder.cli.store import store_connection
from responder.config import Settings
from responder.errors import AuditChainError, CheckpointInvalid
from responder.store import cli_reads
from responder.store.types import Conn
from responder.tlog.note import Verifier, open_checkpoint


def verifier(settings: Settings, key: str | None) -> Verifier:
    """The key given (text or file), else the configured signing key's verifier."""
    from responder.evidence.verify_offline import read_verifier

    return read_verifier(key) if key else load_notary(settings, may_generate=False).verifier


async def run(settings: Settings, args: argparse.Namespace) -> int:
    conn = await store_connection(settings)
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


async def _checkpoint(conn: Conn, settings: Settings, args: argparse.Namespace) -> int:
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


async def _verify(conn: Conn, settings: Settings, args: argparse.Namespace) -> int:
    from responder.audit.verify import check_checkpoint, verify_tree
    from responder.store.actionlog import verify_chain

    chain = await verify_chain(conn)
    print(f"action log OK: {chain.records} records, head {chain.head_hash}")
    report = await verify_tree(conn)
    print(f"tree OK: {report.size} leaves, root {base64.b64encode(report.root).decode()}")
    notes = [n for p in args.checkpoint for n in read_notes(p)]
    if not notes:
        return 0
    key = verifier(settings, args.public_key)
    # Smallest first: the first that fails is where the log stopped matching what was signed.
    opened = []
    for label, note in notes:
        try:
            size = open_checkpoint(note, key).size
        except CheckpointInvalid as e:
            raise CheckpointInvalid(f"checkpoint {label}: {e}") from e
        opened.append((size, label, note))
    for _, label, note in sorted(opened):
        held = await check_checkpoint(conn, report, label, note, key, settings.audit.origin)
        print(f"checkpoint {label}: holds (size {held.checkpoint.size}, consistency proof of"
              f" {len(held.proof)} hashes)")
    return 0


async def _prove(conn: Conn, settings: Settings, args: argparse.Namespace) -> int:
    from responder.store import tree
    from responder.tlog.merkle import leaf_hash, verify_inclusion
    from responder.tlog.note import Checkpoint

    if args.checkpoint is not None:
        note = notes_in(args.checkpoint, quiet=False)[0][1]
        checkpoint = open_checkpoint(note, verifier(settings, args.public_key))
    else:
        stored = await cli_reads.covering_checkpoint(conn, args.seq)
        if stored is None:
            print(f"no stored checkpoint covers record {args.seq} yet (responder audit"
                  " checkpoint --new signs one)", file=sys.stderr)
            return 1
        note = stored
        # Our own store's copy: whoever checks the printed proof checks its signature.
        checkpoint = Checkpoint.parse_body(note.partition("\n\n")[0] + "\n")
    if not 1 <= args.seq <= checkpoint.size:
        raise CheckpointInvalid(f"record {args.seq} is not in a tree of {checkpoint.size}")
    body_text = await cli_reads.record_body(conn, args.seq)
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
