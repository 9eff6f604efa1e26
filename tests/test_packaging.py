"""What a newcomer and a packager find: a LICENSE matching pyproject, project URLs and
classifiers, and ignore files naming every path the build, the demo and the tests write."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT

WRITTEN = (".venv", ".responder", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache",
           "tests/artefacts", "egg-info")


def test_license_matches_pyproject() -> None:
    """pyproject says Apache-2.0, and LICENSE is that licence's text."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    # PEP 639: the licence expression replaces "License ::" classifiers.
    assert not any(c.startswith("License ::") for c in project["classifiers"])
    assert "Typing :: Typed" in project["classifiers"]


def test_ignore_files_cover_what_is_written() -> None:
    """Everything the build, `make run` and the tests write is ignored by git and docker."""
    for name in (".gitignore", ".dockerignore"):
        text = (ROOT / name).read_text()
        for path in WRITTEN:
            assert path in text, f"{name} lacks {path}"
