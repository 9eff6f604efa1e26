"""Export a sealed bundle as a .tar.gz with a .sha256 beside it, and verify one."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from responder.errors import ResponderError


class EvidenceInvalid(ResponderError):
    """An exported bundle does not verify; the message says where."""


@dataclass(frozen=True)
class Sealed:
    incident_id: int
    version: int
    digest: str
    prev_digest: str | None
    body: str


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # the same bundle always exports to the same bytes
    tar.addfile(info, io.BytesIO(data))


def export(sealed: Sealed, out_dir: Path) -> Path:
    """Write incident-ID-vN.tar.gz and its .sha256; return the archive's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"incident-{sealed.incident_id}-v{sealed.version}.tar.gz"
    manifest = {"incident_id": sealed.incident_id, "version": sealed.version,
                "digest": sealed.digest, "prev_digest": sealed.prev_digest,
                "algorithm": "sha256", "file": "bundle.json"}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        _member(tar, "bundle.json", sealed.body.encode())
        _member(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
    archive = out_dir / name
    archive.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (out_dir / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    return archive


def verify(archive: Path) -> Sealed:
    """Check the archive against its .sha256 and the bundle against its manifest."""
    checksum = archive.with_name(archive.name + ".sha256")
    try:
        data = archive.read_bytes()
    except OSError as e:
        # Not evidence that fails to verify: a plain error (main() prints one line).
        raise ResponderError(f"cannot read {archive}: {e.strerror}") from e
    if checksum.is_file():
        expected = checksum.read_text().split()[0]
        if hashlib.sha256(data).hexdigest() != expected:
            raise EvidenceInvalid(f"{archive.name}: SHA-256 differs from {checksum.name}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            files = {m.name: tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
            body = files["bundle.json"].read()  # type: ignore[union-attr]
            manifest = json.loads(files["manifest.json"].read())  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, KeyError, json.JSONDecodeError) as e:
        raise EvidenceInvalid(f"{archive.name}: not a readable evidence archive ({e})") from e
    if hashlib.sha256(body).hexdigest() != manifest.get("digest"):
        raise EvidenceInvalid(f"{archive.name}: bundle.json does not match its digest")
    bundle = json.loads(body)
    if bundle.get("version") != manifest.get("version") or bundle.get("prev_digest") != (
            manifest.get("prev_digest")):
        raise EvidenceInvalid(f"{archive.name}: manifest and bundle disagree")
    return Sealed(manifest["incident_id"], manifest["version"], manifest["digest"],
                  manifest.get("prev_digest"), body.decode())
