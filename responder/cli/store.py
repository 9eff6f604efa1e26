"""The commands that read the store directly: ``actions``, ``incidents``, ``evidence
export`` (the ``audit`` ones are in ``cli.audit``), and the one connection they share."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from responder.cli.output import print_rows
from responder.config import Settings
from responder.errors import StoreUnavailable
from responder.store import cli_reads, queries
from responder.store.direct import Embedded, connect, embedded_status
from responder.store.embedded import start_embedded
from responder.store.types import Conn

INCIDENT_COLUMNS = (("ID", "id", 5), ("OPENED (UTC)", "opened", 19), ("SEV", "severity", 8),
                    ("STATUS", "status", 8), ("HELD NOW", "held_now", 8),
                    ("RULE", "rule_id", 26), ("SET", "held", 0))


async def store_connection(settings: Settings) -> Conn:
    """The command's own connection; the caller closes it.

    Without ``RESPONDER_DATABASE_URL`` it uses the embedded server under the data
    directory. It never creates a database there, and when no daemon has that server
    running it says so in one line before starting it for the command (it stops again
    when the command ends, unless a daemon starts using it meanwhile).
    """
    if settings.database_url is not None:
        return await connect(settings.database_url.get_secret_value())
    pgdata = settings.data_dir / "pgdata"
    status = embedded_status(settings.data_dir)
    if status is Embedded.ABSENT:
        raise StoreUnavailable(f"no store in {pgdata}: `responder run` creates it, or set"
                               " RESPONDER_DATABASE_URL")
    if status is Embedded.STOPPED:
        print(f"responder: no database server is running on {pgdata}; starting it for this"
              " command only", file=sys.stderr)
    return await connect(await start_embedded(settings.data_dir))


def _summary(record: dict[str, Any]) -> str:
    d = record.get("detail", {})
    kind = record["kind"]
    if kind in ("intent", "outcome"):
        status = d.get("status", "planned")
        return f"{d.get('kind', '')} -> {d.get('level', '')} [{status}]"
    if kind == "alert_received":
        alert = d.get("alert", {})
        name = alert.get("labels", {}).get("alertname", "?")
        return f"{name} {alert.get('status', '')} matched={','.join(d.get('matched_rules', []))}"
    if kind == "already_contained":
        return f"requested {d.get('requested')} held {d.get('held')}"
    for field in ("reason", "note", "scope", "value"):
        if field in d:
            return f"{field}: {d[field]}"
    return ""


async def actions(settings: Settings, args: argparse.Namespace) -> int:
    conn = await store_connection(settings)
    try:
        total = await cli_reads.last_seq(conn)
        f = queries.ActionFilter(rule_id=args.rule, control=args.control,
                                 incident_id=args.incident, kind=args.kind,
                                 correlation_id=args.correlation_id,
                                 after=max(0, total - args.limit) if not any(
                                     (args.rule, args.control, args.incident, args.kind,
                                      args.correlation_id))
                                 else 0, limit=args.limit)
        records = await queries.list_actions(conn, f)
    finally:
        await conn.close()
    if args.json or args.output == "json":
        for r in records:
            print(json.dumps(r, default=str))
        return 0
    header = (f"{'SEQ':>5}  {'TIME (UTC)':19}  {'KIND':18} {'INC':>4}  {'RULE':26} "
              f"{'CONTROL[KEY]':24} DETAIL")
    print(header)
    for r in records:
        target = f"{r.get('control') or ''}" + (f"[{r['key']}]" if r.get("key") else "")
        print(f"{r['seq']:>5}  {r['at'][:19].replace('T', ' '):19}  {r['kind']:18} "
              f"{r.get('incident_id') or '':>4}  {(r.get('rule_id') or '')[:26]:26} "
              f"{target[:24]:24} {_summary(r)}")
    return 0


def _held(controls: list[dict[str, Any]]) -> str:
    """What the incident's steps set (a later release may have lowered some since)."""
    return ", ".join(f"{c['control']}" + (f"[{c['key']}]" if c.get("key") else "")
                     + f"={c['level']}" for c in controls) or "-"


async def incidents(settings: Settings, args: argparse.Namespace) -> int:
    """The incident list, newest first, with what each holds."""
    conn = await store_connection(settings)
    try:
        rows = await queries.list_incidents(conn, args.before, max(1, args.limit))
    finally:
        await conn.close()
    if args.output == "json":
        print_rows(rows, INCIDENT_COLUMNS, "json")
        return 0
    shown = [{**r, "opened": r["opened_at"].isoformat()[:19].replace("T", " "),
              "held": _held(r["controls"])} for r in rows]
    print_rows(shown, INCIDENT_COLUMNS, "table")
    return 0


async def export_evidence(settings: Settings, args: argparse.Namespace) -> int:
    from responder.evidence.export import Sealed, export

    conn = await store_connection(settings)
    try:
        row = await cli_reads.sealed_evidence(conn, args.incident, args.version)
    finally:
        await conn.close()
    if row is None:
        print(f"responder: no evidence for incident {args.incident}", file=sys.stderr)
        return 1
    archive = export(Sealed(args.incident, row.version, row.digest, row.prev_digest,
                            row.body), args.out)
    print(f"{archive} (version {row.version}, bundle digest {row.digest})")
    return 0
