"""Check a sealed bundle with nothing but the log's public key: no store, no daemon.

The steps are those of docs/audit-log.md, so that an auditor can redo them elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from responder.errors import CheckpointInvalid
from responder.tlog.merkle import leaf_hash, verify_inclusion
from responder.tlog.note import Checkpoint, Verifier, open_checkpoint
from responder.tlog.records import record_text


@dataclass(frozen=True)
class BundleReport:
    incident_id: int | None
    version: int | None
    checkpoint: Checkpoint
    records: int


def read_bundle(path: Path) -> dict[str, Any]:
    """A bundle from an exported .tar.gz (its digests checked), a sink's delivery or a bare
    bundle JSON file."""
    if path.name.endswith(".tar.gz"):
        from responder.evidence.export import verify as verify_archive

        return dict(json.loads(verify_archive(path).body))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointInvalid(f"{path}: not a readable bundle ({e})") from e
    if isinstance(data, dict) and isinstance(data.get("bundle"), dict):
        data = data["bundle"]
    if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
        raise CheckpointInvalid(f"{path}: not an evidence bundle")
    return data


def _proof(entry: dict[str, Any], seq: int) -> list[bytes]:
    try:
        return [base64.b64decode(p, validate=True) for p in entry["proof"]]
    except (KeyError, TypeError, binascii.Error) as e:
        raise CheckpointInvalid(f"record {seq}: its proof is not a list of base64") from e


def verify_bundle(bundle: dict[str, Any], verifier: Verifier) -> BundleReport:
    """Check the checkpoint's signature, then every record's inclusion under its root."""
    audit = bundle.get("audit")
    if not isinstance(audit, dict) or not isinstance(audit.get("checkpoint"), str):
        raise CheckpointInvalid("the bundle carries no checkpoint")
    checkpoint = open_checkpoint(audit["checkpoint"], verifier)
    if audit.get("tree_size") != checkpoint.size:
        raise CheckpointInvalid(f"the bundle's proofs are for tree size"
                                f" {audit.get('tree_size')}, its checkpoint is of"
                                f" {checkpoint.size}")
    entries = {e.get("seq"): e for e in audit.get("records", []) if isinstance(e, dict)}
    for action in bundle["actions"]:
        seq = action.get("seq")
        entry = entries.pop(seq, None)
        if not isinstance(seq, int) or entry is None:
            raise CheckpointInvalid(f"record {seq}: the bundle has no proof for it")
        if entry.get("tree_size", checkpoint.size) != checkpoint.size:
            raise CheckpointInvalid(f"record {seq}: its proof names tree size"
                                    f" {entry.get('tree_size')}, the checkpoint"
                                    f" {checkpoint.size}")
        record = {k: v for k, v in action.items() if k != "hash"}
        text = entry.get("record")
        if text is None:
            text = record_text(record)
        elif not isinstance(text, str) or json.loads(text) != record:
            raise CheckpointInvalid(f"record {seq}: its bytes differ from the bundle's action")
        if not verify_inclusion(seq - 1, checkpoint.size, leaf_hash(text.encode()),
                                _proof(entry, seq), checkpoint.root):
            raise CheckpointInvalid(f"record {seq}: not included in the checkpoint's tree")
    if entries:
        raise CheckpointInvalid("proofs for records the bundle does not hold:"
                                f" {sorted(map(str, entries))}")
    incident = bundle.get("incident") or {}
    return BundleReport(incident.get("id"), bundle.get("version"), checkpoint,
                        len(bundle["actions"]))


def read_verifier(text_or_path: str) -> Verifier:
    """A verifier key given inline or in a file (``responder audit keygen`` writes .pub)."""
    path = Path(text_or_path)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else text_or_path
    except OSError as e:
        raise CheckpointInvalid(f"{path}: {e.strerror}") from e
    return Verifier.parse(text)
