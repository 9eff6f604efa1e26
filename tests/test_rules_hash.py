"""An auditor can tie an action to the signature: records carry the signed hash too."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from responder.cli import main
from responder.rules.signing import SIGNATURE_FILE
from tests.conftest import DaemonFactory, fixture_bytes, idle, post_alerts, query


async def test_records_carry_the_hash_that_was_signed(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, rules_dir: Path,
    tmp_path: Path,
) -> None:
    """With packs off, each record holds the in-force hash and the signed one, which verifies."""
    assert main(["rules", "keygen", str(tmp_path / "signer")]) == 0
    assert main(["rules", "sign", str(rules_dir), "--key", str(tmp_path / "signer.key")]) == 0
    public = tmp_path / "signer.pub"
    daemon = await make_daemon(rules_strict=True, rules_public_keys=[public])
    assert daemon.state is not None
    table = daemon.state.rules
    assert table.signed_hash != table.bundle_hash  # the shipped packs are off by default
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    rows = await query(database, "SELECT body FROM action_log WHERE kind = 'outcome'")
    assert rows
    key = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    signature = base64.b64decode((rules_dir / SIGNATURE_FILE).read_text())
    for row in rows:
        record = json.loads(row["body"])
        assert record["rules_hash"] == table.bundle_hash
        key.verify(signature, record["rules_signed_hash"].encode())  # raises if not signed
