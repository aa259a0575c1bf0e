"""What the wheel carries besides code: the typing marker and the licence."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_says_it_is_typed() -> None:
    assert resources.files("testio_mirror").joinpath("py.typed").is_file()


def test_the_licence_file_is_declared_and_present() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    for name in project["license-files"]:
        assert "MIT License" in (ROOT / name).read_text(encoding="utf-8")
