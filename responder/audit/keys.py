"""The checkpoint signing key: from a configured file, or made once under the data dir."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from responder.audit.note import Signer, Verifier
from responder.config import Settings
from responder.errors import CheckpointInvalid, ConfigError

log = structlog.get_logger("responder.audit")

GENERATED_KEY = "audit-signing.key"
GENERATED_PUB = "audit-signing.pub"


@dataclass(frozen=True)
class Notary:
    """Who signs checkpoints, and for which log."""

    signer: Signer
    origin: str

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier


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
        write_key(signer, settings.data_dir / "audit-signing")
        log.warning("generated a checkpoint signing key; configure your own for production",
                    key_file=str(path), public_key=str(signer.verifier))
    return Notary(_read(path), settings.audit.origin)


def write_key(signer: Signer, prefix: Path) -> tuple[Path, Path]:
    """PREFIX.key (owner-only) and PREFIX.pub, the verifier key to hand to auditors."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    key, pub = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"{signer}\n")
    pub.write_text(f"{signer.verifier}\n", encoding="utf-8")
    return key, pub
