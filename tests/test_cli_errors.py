"""The CLI fails with one line naming the problem, never a traceback; its options all have
help, work after the subcommand, and durations read the same everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.cli import _parser, main
from responder.cli.output import every_option
from responder.durations import parse_duration_s
from responder.replay.command import parse_since
from responder.rules.schema import duration_s
from tests.conftest import (
    ROOT,
    WEBHOOK_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    free_port,
    idle,
    post_alerts,
)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_daemon_not_running(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A reading command against an address where nothing listens says so in one line."""
    monkeypatch.setenv("RESPONDER_TOKEN", "some-token")
    port = free_port()
    assert main(["controls", "--url", f"http://127.0.0.1:{port}"]) == 1
    line = one_line(capsys)
    assert f"cannot reach the daemon at 127.0.0.1:{port}" in line
    assert "connection refused" in line


def test_fixture_file_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A missing fixture file is named as a fixture."""
    assert main(["test-rules", str(tmp_path / "absent.test.yaml")]) == 2
    assert one_line(capsys) == f"responder: fixture {tmp_path / 'absent.test.yaml'}: no such file"


def test_fixture_error_names_fixture_and_real_line(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    """A bad field in a fixture says "fixture" (not "rules") and the line it is on."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "tests").mkdir()
    fixture = rules / "tests" / "bad.test.yaml"
    fixture.write_text("rules_dir: ..\ntests:\n  - name: one\n    alerts:\n"
                       "      - labels: {alertname: a}\n    expect:\n      callz: []\n")
    assert main(["test-rules", str(fixture)]) == 2
    line = one_line(capsys)
    assert line.startswith(f"responder: fixture {fixture}:7: ")
    assert "callz" in line
    assert "rules" not in line.removeprefix(f"responder: fixture {fixture}")


def test_fixture_not_yaml_gives_its_line(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """A fixture that is not YAML names the line the parser stopped at."""
    fixture = tmp_path / "broken.test.yaml"
    fixture.write_text("rules_dir: ..\ntests:\n  - name: [unclosed\n")
    assert main(["test-rules", str(fixture)]) == 2
    assert one_line(capsys).startswith(f"responder: fixture {fixture}:")


def test_no_rules_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """check-rules on a directory that is not there says so in one line."""
    assert main(["check-rules", str(tmp_path / "nowhere")]) == 2
    assert one_line(capsys) == (f"responder: invalid rules: {tmp_path / 'nowhere'}:"
                                " rules directory does not exist")


def test_config_file_missing_after_the_subcommand(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    """--config is read after the subcommand too, and a missing file is one line."""
    assert main(["actions", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "no such file" in one_line(capsys)


def test_global_option_before_and_after_agree(tmp_path: Path) -> None:
    """--config given before or after the subcommand lands in the same place, and a later
    subcommand's default does not erase one given before it."""
    before = _parser().parse_args(["--config", "a.toml", "incidents"])
    after = _parser().parse_args(["incidents", "--config", "a.toml"])
    nested = _parser().parse_args(["audit", "verify", "--config", "a.toml"])
    assert before.config == after.config == nested.config == Path("a.toml")
    assert _parser().parse_args(["incidents"]).config is None


def test_every_option_has_help() -> None:
    """Every option and argument of every subcommand says what it is for."""
    missing = [f"{' '.join(path)} {a.option_strings or a.dest}"
               for path, a in every_option(_parser()) if not a.help]
    assert missing == []


def test_reading_commands_take_output() -> None:
    """actions, controls and incidents take -o table|json."""
    for command in ("actions", "controls", "incidents"):
        assert _parser().parse_args([command, "-o", "json"]).output == "json"
        assert _parser().parse_args([command]).output == "table"


@given(st.lists(st.integers(0, 400), min_size=6, max_size=6))
def test_one_duration_syntax(parts: list[int]) -> None:
    """Any w/d/h/m/s/ms duration reads the same in rules and in replay --since."""
    units = ("w", "d", "h", "m", "s", "ms")
    text = "".join(f"{n}{u}" for n, u in zip(parts, units, strict=True) if n) or "0s"
    seconds = (parts[0] * 604800 + parts[1] * 86400 + parts[2] * 3600 + parts[3] * 60
               + parts[4] + parts[5] / 1000)
    assert parse_duration_s(text) == pytest.approx(seconds)
    assert duration_s(text) == pytest.approx(seconds)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    since = parse_since(text, now)
    assert since is not None
    assert (now - since).total_seconds() == pytest.approx(seconds, abs=1e-3)


@given(st.text(max_size=12))
def test_durations_refuse_what_they_cannot_read(text: str) -> None:
    """A string is either a duration or a ValueError that names the syntax."""
    try:
        value = parse_duration_s(text)
    except ValueError as e:
        message = str(e)
        value = 0.0
    else:
        message = "not a duration"
    assert "not a duration" in message
    assert value >= 0


def test_port_busy(tmp_path: Path, database: str) -> None:
    """`responder run` on a port another process holds says so in one line."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, "RESPONDER_DATABASE_URL": database,
               "RESPONDER_RULES_DIR": str(ROOT / "rules"), "RESPONDER_EXCHANGE_TOKEN": "t",
               "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN,
               "RESPONDER_LISTEN": f"127.0.0.1:{port}", "RESPONDER_LOG_LEVEL": "error"}
        done = subprocess.run([sys.executable, "-m", "responder", "run"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == (f"responder: cannot listen on 127.0.0.1:{port}: the port is in use"
                    " (another responder?); stop it or set RESPONDER_LISTEN"), done.stderr


def test_run_without_a_rules_directory(tmp_path: Path, database: str) -> None:
    """`responder run` pointed at a rules directory that is not there says so in one line."""
    env = {**os.environ, "RESPONDER_DATABASE_URL": database,
           "RESPONDER_RULES_DIR": str(tmp_path / "nowhere"),
           "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN, "RESPONDER_LISTEN": "127.0.0.1:0",
           "RESPONDER_LOG_LEVEL": "error"}
    done = subprocess.run([sys.executable, "-m", "responder", "run"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"responder: invalid rules: {tmp_path / 'nowhere'}:"), done.stderr


async def test_incidents_command_reads_the_store(make_daemon: DaemonFactory, exchange: Exchange,
                                                 http: aiohttp.ClientSession,
                                                 database: str) -> None:
    """`responder incidents` lists what each incident holds now, as a table or JSON lines."""
    daemon = await make_daemon()
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    assert status == 200
    await idle(daemon)
    env = {**os.environ, "RESPONDER_DATABASE_URL": database}

    async def run(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "responder", "incidents", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    [line] = (await run("-o", "json")).splitlines()
    row = json.loads(line)
    assert (row["id"], row["rule_id"], row["held_now"]) == (1, "ledger-invariant-violation", 2)
    table = (await run()).splitlines()
    assert table[0].split() == ["ID", "OPENED", "(UTC)", "SEV", "STATUS", "HELD", "NOW", "RULE",
                                "SET"]
    assert "withdrawals=HALTED" in table[1]
