"""The store commands find the database without creating one: with no database configured
they read the embedded server's state, and never initialise a server of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from responder.cli import main
from responder.store.direct import Embedded, embedded_status
from tests.conftest import ROOT


@pytest.mark.parametrize("command", [["actions"], ["incidents"], ["audit", "verify"]])
def test_reading_command_creates_no_database(command: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a database URL and with no store under the data directory, a reading
    command says so in one line and leaves no database server or data folder behind."""
    monkeypatch.setenv("RESPONDER_DATABASE_URL", "")
    monkeypatch.setenv("RESPONDER_DATA_DIR", str(tmp_path / "data"))
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"responder: no store in {tmp_path / 'data' / 'pgdata'}: `responder run` creates it,"
        " or set RESPONDER_DATABASE_URL"]
    assert not (tmp_path / "data" / "pgdata").exists()


def test_embedded_status_reads_the_folder_only(tmp_path: Path) -> None:
    """A data folder with no cluster is absent; a cluster whose server's pid file names no
    live process is stopped (a leftover pid file from a killed server is not "running")."""
    assert embedded_status(tmp_path) is Embedded.ABSENT
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    assert embedded_status(tmp_path) is Embedded.STOPPED
    dead = _dead_pid()
    (pgdata / "postmaster.pid").write_text(
        f"{dead}\n{pgdata}\n1700000000\n5432\n/tmp\nlocalhost\n  0  0\nready   \n")
    assert embedded_status(tmp_path) is Embedded.STOPPED


def _dead_pid() -> int:
    """A process id that no process has now."""
    pid = os.getpid() + 100_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_reading_the_embedded_state_warns_of_nothing(tmp_path: Path) -> None:
    """Every store command reads the embedded server's state; with XDG_RUNTIME_DIR unset
    (root, a service, CI) that printed a platformdirs warning each time."""
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("16\n")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import sys, pathlib;"
         " from responder.store.direct import embedded_status;"
         " print(embedded_status(pathlib.Path(sys.argv[1])).value)", str(tmp_path)],
        check=False, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "stopped", "")
