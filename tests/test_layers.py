"""Layer rules the code must keep, checked on its syntax tree: the store is the one room that
holds SQL and talks to the driver."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "responder"
STORE = PACKAGE / "store"

SQL = re.compile(
    r"^\s*\(?\s*(?:"
    r"SELECT\s+\S"
    r"|INSERT\s+INTO\s"
    r"|UPDATE\s+\w+\s+SET\s"
    r"|DELETE\s+FROM\s"
    r"|WITH\s+(?:RECURSIVE\s+)?\w+\s+AS\s*(?:MATERIALIZED\s+)?\("
    r")"
)
"""A statement as a string starts: the keywords in capitals, as responder writes SQL (so
prose such as "select a rule" is not taken for it)."""


def _outside_store() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE not in path.parents:
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _where(path: Path, nodes: list[ast.AST]) -> list[str]:
    """file:line of each node, in line order."""
    lines = sorted({getattr(n, "lineno", 0) for n in nodes})
    return [f"{path.relative_to(PACKAGE.parent)}:{line}" for line in lines]


def sql_outside_store() -> list[str]:
    """file:line of each string literal outside store/ that holds an SQL statement."""
    found = []
    for path, tree in _outside_store():
        found += _where(path, [n for n in ast.walk(tree) if SQL.match(_text(n))])
    return found


def _text(node: ast.AST) -> str:
    """A string literal's text; an f-string's with ``?`` for each replacement field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "?"
                       for v in node.values)
    return ""


def asyncpg_outside_store() -> list[str]:
    """file:line of each import of asyncpg outside store/, at any depth of the module."""
    found = []
    for path, tree in _outside_store():
        found += _where(path, [n for n in ast.walk(tree) if _imports_asyncpg(n)])
    return found


def _imports_asyncpg(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module or ""]
    else:
        return False
    return any(n == "asyncpg" or n.startswith("asyncpg.") for n in names)


def test_the_sql_check_sees_statements_and_not_prose() -> None:
    for text in ("SELECT 1", "\nSELECT id FROM incidents", " INSERT INTO outbox (id)",
                 "UPDATE steps SET status = 'done'", "DELETE FROM inbox WHERE id = $1",
                 "\nWITH free AS (\n  SELECT 1)", "(SELECT x FROM y)"):
        assert SQL.match(text), text
    statement = ast.parse('f"SELECT {x} FROM t"').body[0]
    assert isinstance(statement, ast.Expr) and SQL.match(_text(statement.value))
    for text in ("select a rule", "Update the level", "With this, the key is held",
                 "SELECT", "the SELECT above", "DELETE /v1/controls"):
        assert not SQL.match(text), text


def test_no_sql_outside_store() -> None:
    offenders = sql_outside_store()
    assert not offenders, "SQL outside responder/store/:\n  " + "\n  ".join(offenders)


def test_only_store_imports_asyncpg() -> None:
    offenders = asyncpg_outside_store()
    assert not offenders, "asyncpg imported outside responder/store/:\n  " + "\n  ".join(
        offenders)


def entry_kinds_spelled_out() -> list[str]:
    """file:line of each action-log entry made with its kind as a string literal rather
    than from the vocabulary (store/kinds.py)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "Entry"]
        literal = [c for c in calls
                   if (c.args and isinstance(c.args[0], ast.Constant))
                   or any(k.arg == "kind" and isinstance(k.value, ast.Constant)
                          for k in c.keywords)]
        found += _where(path, list(literal))
    return found


def test_entry_kinds_come_from_the_vocabulary() -> None:
    offenders = entry_kinds_spelled_out()
    assert not offenders, "entry kinds spelled out instead of store/kinds.py:\n" + "\n".join(
        f"    {o}" for o in offenders)
