"""Documentation that must not drift from the code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import testio_mirror
import testio_mirror.errors as errors_module
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


def _import_every_module() -> None:
    """Import every module of the package, so every error class it defines exists."""
    for module in pkgutil.walk_packages(testio_mirror.__path__, "testio_mirror."):
        importlib.import_module(module.name)


# A line of the tree: its drawing, the class's name, and the module it is defined in, if named.
TREE_LINE = re.compile(
    r"^(?P<indent>[ │├└─]*)(?P<name>\w+Error)\b\s*(?:\((?P<module>[\w/]+)\.py\))?"
)


def _tree() -> dict[str, tuple[str | None, str]]:
    """The classes errors.py's tree names: name -> (the class it hangs from, its module)."""
    named: dict[str, tuple[str | None, str]] = {}
    ancestors: list[tuple[int, str, str]] = []  # (column, name, module) of the open branches
    for line in (errors_module.__doc__ or "").splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        column = len(match["indent"])
        while ancestors and ancestors[-1][0] >= column:
            ancestors.pop()
        parent = ancestors[-1] if ancestors else None
        module = (
            "testio_mirror." + match["module"].replace("/", ".")
            if match["module"]
            else (parent[2] if parent else errors_module.__name__)
        )
        named[match["name"]] = (parent[1] if parent else None, module)
        ancestors.append((column, match["name"], module))
    return named


def test_error_tree_names_every_error_the_project_raises() -> None:
    _import_every_module()
    tree = _tree()
    errors = {e.__name__: e for e in _subclasses(errors_module.MirrorError)}
    errors[errors_module.MirrorError.__name__] = errors_module.MirrorError
    for name, error in errors.items():
        if error.__module__.startswith("testio_mirror"):
            assert name in tree, name
    for name, (parent, module) in tree.items():
        assert name in errors, f"errors.py's tree names {name}, which does not exist"
        assert errors[name].__module__ == module, name
        if parent is not None:
            assert errors[parent] in errors[name].__bases__, name
