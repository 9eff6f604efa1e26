"""Signed checkpoints in the C2SP formats: ``tlog-checkpoint`` text in a ``signed-note``.

A checkpoint body is three lines: the log's origin, the tree size in decimal, the root hash
in standard base64. The note is the body, a blank line, then one line per signature:
``— <key name> <base64(key id ‖ Ed25519 signature)>``, where the key id is the first four
bytes of SHA-256(key name ‖ "\\n" ‖ 0x01 ‖ public key). Keys are spelt as the signed-note
tooling spells them: ``PRIVATE+KEY+<name>+<id hex>+<base64(0x01 ‖ seed)>`` for the signer
and ``<name>+<id hex>+<base64(0x01 ‖ public key)>`` for the verifier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from responder.errors import CheckpointInvalid

ED25519 = b"\x01"
DASH = "\u2014"


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """A verifier key in signed-note form (``name+idhex+base64``)."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _valid_name(parts[0]):
            raise CheckpointInvalid("public key: expected NAME+KEYID+BASE64")
        try:
            key_id, raw = bytes.fromhex(parts[1]), base64.b64decode(parts[2], validate=True)
        except (ValueError, binascii.Error) as e:
            raise CheckpointInvalid("public key: bad key id or base64") from e
        if len(raw) != 33 or raw[:1] != ED25519 or _key_id(parts[0], raw[1:]) != key_id:
            raise CheckpointInvalid("public key: not an Ed25519 key of that name and id")
        return cls(parts[0], key_id, Ed25519PublicKey.from_public_bytes(raw[1:]))

    def __str__(self) -> str:
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(ED25519 + raw).decode()}"

    def check(self, note: str) -> str:
        """The note's body once one of its signatures is ours and valid; else refuse it."""
        body, sep, signatures = note.partition("\n\n")
        if not sep or not signatures.endswith("\n"):
            raise CheckpointInvalid("not a signed note: no signature lines")
        body += "\n"
        ours = 0
        for line in signatures[:-1].split("\n"):
            prefix, _, rest = line.partition(" ")
            name, _, sig64 = rest.partition(" ")
            if prefix != DASH or name != self.name:
                continue
            try:
                sig = base64.b64decode(sig64, validate=True)
            except binascii.Error:
                continue
            if sig[:4] != self.key_id:
                continue
            ours += 1
            try:
                self.public.verify(sig[4:], body.encode())
            except InvalidSignature:
                continue
            return body
        raise CheckpointInvalid(f"signature by {self.name} is {'invalid' if ours else 'missing'}")


@dataclass(frozen=True)
class Signer:
    name: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> Signer:
        if not _valid_name(name):
            raise CheckpointInvalid(f"key name {name!r}: no spaces or '+'")
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _valid_name(parts[2]):
            raise CheckpointInvalid("signing key: expected PRIVATE+KEY+NAME+KEYID+BASE64")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except binascii.Error as e:
            raise CheckpointInvalid("signing key: bad base64") from e
        if len(raw) != 33 or raw[:1] != ED25519:
            raise CheckpointInvalid("signing key: not an Ed25519 key")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier.key_id.hex() != parts[3].lower():
            raise CheckpointInvalid("signing key: key id does not match the key")
        return signer

    def __str__(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return (f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}"
                f"+{base64.b64encode(ED25519 + seed).decode()}")

    @property
    def verifier(self) -> Verifier:
        public = self.private.public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, _key_id(self.name, raw), public)

    def sign(self, body: str) -> str:
        """The note: body, a blank line, our signature line. Ed25519 is deterministic, so
        every replica holding the key signs one body into the same note."""
        sig = self.verifier.key_id + self.private.sign(body.encode())
        return f"{body}\n{DASH} {self.name} {base64.b64encode(sig).decode()}\n"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointInvalid("checkpoint: expected origin, size and root lines")
        origin, size, root64 = lines[:3]
        if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise CheckpointInvalid("checkpoint: bad origin or tree size")
        try:
            root = base64.b64decode(root64, validate=True)
        except binascii.Error as e:
            raise CheckpointInvalid("checkpoint: root is not base64") from e
        if len(root) != 32:
            raise CheckpointInvalid("checkpoint: root is not a SHA-256 hash")
        return cls(origin, int(size), root)


def open_checkpoint(note: str, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """The checkpoint a note carries, once its signature and origin are checked."""
    checkpoint = Checkpoint.parse_body(verifier.check(note))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointInvalid(f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint


@dataclass(frozen=True)
class Notary:
    """Who signs checkpoints, and for which log."""

    signer: Signer
    origin: str

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier
