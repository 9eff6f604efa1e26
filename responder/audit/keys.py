"""The checkpoint signing key: from a configured file, or made once under the data dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import structlog

from responder.config import Settings
from responder.errors import CheckpointInvalid, ConfigError
from responder.tlog.note import Notary, Signer

log = structlog.get_logger("responder.audit")

GENERATED_KEY = "audit-signing.key"
GENERATED_PUB = "audit-signing.pub"




def _read(path: Path) -> Signer:
    try:
        return Signer.parse(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"RESPONDER_AUDIT_SIGNING_KEY_FILE: cannot read {path}:"
                          f" {e.strerror}") from e
    except CheckpointInvalid as e:
        raise ConfigError(f"RESPONDER_AUDIT_SIGNING_KEY_FILE: {path}: {e}") from e


def load_notary(settings: Settings, *, may_generate: bool = True) -> Notary:
    """The configured key; outside production, the data directory's (made at first start)."""
    if settings.audit.signing_key_file is not None:
        return Notary(_read(settings.audit.signing_key_file), settings.audit.origin)
    if settings.env == "production":
        raise ConfigError("RESPONDER_AUDIT_SIGNING_KEY_FILE: production needs a configured"
                          " checkpoint signing key (responder audit keygen PREFIX)")
    path = settings.data_dir / GENERATED_KEY
    if not path.is_file():
        if not may_generate:
            raise ConfigError(f"RESPONDER_AUDIT_SIGNING_KEY_FILE: unset and no {path} yet")
        signer = Signer.generate(settings.audit.origin)
        try:
            write_key(signer, settings.data_dir / "audit-signing")
        except FileExistsError:
            pass  # another process sharing this data directory made it first: use theirs
        else:
            log.warning("generated a checkpoint signing key; configure your own for"
                        " production", key_file=str(path), public_key=str(signer.verifier))
    return Notary(_read(path), settings.audit.origin)


def _write_new(path: Path, text: str, mode: int) -> None:
    """Write ``path`` whole or not at all, and never over an existing file.

    The text goes to a private temporary file first, which is then hard-linked into place:
    the link fails with FileExistsError if ``path`` exists, and a reader never sees a file
    that is still being written (two replicas sharing a data directory start at once).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def write_key(signer: Signer, prefix: Path) -> tuple[Path, Path]:
    """PREFIX.key (owner-only) and PREFIX.pub, the verifier key to hand to auditors.

    A key that exists is never replaced: FileExistsError instead.
    """
    prefix.parent.mkdir(parents=True, exist_ok=True)
    key, pub = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    _write_new(key, f"{signer}\n", 0o600)
    tmp = pub.with_name(f".{pub.name}.{os.getpid()}")
    tmp.write_text(f"{signer.verifier}\n", encoding="utf-8")
    tmp.replace(pub)
    return key, pub
