"""No module of responder/ is over 300 lines: a room that big holds more than one job."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

MAX_LINES = 300


def oversized(root: Path, package: str = "responder") -> list[str]:
    """Each module of the package over the limit, as its path and line count."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(root)} ({lines})")
    return found


def test_no_module_is_over_300_lines() -> None:
    """Every module under responder/ has at most 300 lines."""
    found = oversized(ROOT)
    assert not found, f"over {MAX_LINES} lines: {', '.join(found)}"


def test_the_rule_names_a_long_module_and_passes_a_short_one(tmp_path: Path) -> None:
    """The size rule lists a nested module one line over the limit, with its count, and
    not one at the limit."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "pkg" / "short.py").write_text("x = 1\n" * MAX_LINES)
    assert oversized(tmp_path, "pkg") == [f"pkg/sub/long.py ({MAX_LINES + 1})"]
