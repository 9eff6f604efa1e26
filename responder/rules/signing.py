"""Detached Ed25519 signatures over a rule table's bundle hash (strict mode).

The signature covers the bundle hash, which covers every rule file's name and bytes, so
changing one byte of one file, or adding or removing a file, breaks it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from responder.errors import RuleError, RuleProblem

SIGNATURE_FILE = "bundle.sig"


def keygen(prefix: Path) -> tuple[Path, Path]:
    """Write PREFIX.key (private, mode 0600) and PREFIX.pub; return both paths."""
    key = Ed25519PrivateKey.generate()
    private, public = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def sign(rules_dir: Path, bundle_hash: str, private_key: Path) -> Path:
    """Write the detached signature of bundle_hash next to the rules."""
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuleError([RuleProblem(str(private_key), 0, "not an Ed25519 private key")])
    out = rules_dir / SIGNATURE_FILE
    out.write_text(base64.b64encode(key.sign(bundle_hash.encode())).decode() + "\n")
    return out


def verify(rules_dir: Path, bundle_hash: str, public_keys: Sequence[Path]) -> None:
    """Raise RuleError unless the bundle's signature verifies against one of the keys."""
    sig_path = rules_dir / SIGNATURE_FILE
    try:
        signature = base64.b64decode(sig_path.read_text().strip(), validate=True)
    except (OSError, ValueError) as e:
        raise RuleError([RuleProblem(str(sig_path), 0, f"no valid signature: {e}")]) from e
    for path in public_keys:
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            continue
        try:
            key.verify(signature, bundle_hash.encode())
        except InvalidSignature:
            continue
        return
    raise RuleError([RuleProblem(str(sig_path), 0,
                                 "signature does not verify against any configured public key"
                                 " (a file changed, or it was signed with another key)")])
