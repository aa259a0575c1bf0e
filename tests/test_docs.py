"""Documentation that must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import testio_mirror.sandbox as sandbox_package

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "testio_mirror"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme
    assert "make test" in readme


def test_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+\.py)`", page))
    for module in SOURCE.rglob("*.py"):
        relative = module.relative_to(SOURCE).as_posix()
        assert relative in named, f"docs/architecture.md does not say what {relative} does"


def test_sandbox_public_names_exist_and_are_sorted() -> None:
    exported = sandbox_package.__all__
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    for name in exported:
        assert hasattr(sandbox_package, name), name


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_error_tree_names_every_error_the_project_raises() -> None:
    import testio_mirror.errors as errors_module
    import testio_mirror.sandbox
    import testio_mirror.store
    import testio_mirror.sync
    import testio_mirror.upstream  # noqa: F401  (import every package so all errors exist)

    tree = errors_module.__doc__ or ""
    upstream_tree = (ROOT / "src" / "testio_mirror" / "upstream" / "errors.py").read_text()
    for error in _subclasses(errors_module.MirrorError):
        if error.__module__.startswith("testio_mirror"):
            assert error.__name__ in tree or error.__name__ in upstream_tree, error.__name__
