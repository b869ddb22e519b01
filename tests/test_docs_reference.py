"""The API reference leaves nothing public out.

The public surface is what the package root exports, the groups an `Entitlements`
carries (``ents.plans``, ``ents.subscriptions``, ...), and every class of ours that their
signatures and fields take or return — a host meets each of those without importing
anything else. For each such class, the built reference must render the class and every
public method, property, field and enum member it defines, and each of those must carry a
docstring. mkdocstrings silently skips members without one, which is how the reference
used to lose methods; building the site is the only way to see what a reader sees.
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import entitlements
from entitlements import Entitlements, MemoryStore, errors

griffe = pytest.importorskip("griffe", reason="needs the docs extra")
mkdocs_config = pytest.importorskip("mkdocs.config", reason="needs the docs extra")
mkdocs_build = pytest.importorskip("mkdocs.commands.build", reason="needs the docs extra")

ROOT = Path(__file__).parent.parent

WIRING = {
    "runtime": "the wiring the groups share (clock, store, cache), not an API of its own",
    "store": "the store the host passed in; stores are documented under Ports and stores",
}
"""Public attributes of `Entitlements` that are not groups of use cases."""


def _ours(obj: object) -> bool:
    return (
        isinstance(obj, type)
        and obj.__module__.split(".")[0] == "entitlements"
        and not obj.__name__.startswith("_")
    )


def _hinted_classes(hint: object) -> Iterator[type]:
    if _ours(hint):
        yield typing.cast(type, hint)
    for arg in typing.get_args(hint):
        yield from _hinted_classes(arg)


def _hints(obj: object) -> dict[str, object]:
    try:
        return typing.get_type_hints(obj)
    except (NameError, TypeError):
        return {}


def _own_members(cls: type) -> Iterator[tuple[str, object]]:
    """Public names ``cls`` itself defines (inherited ones are documented on the base)."""
    inherited_fields: set[str] = set()
    for base in cls.__mro__[1:]:
        if attrs.has(base):
            inherited_fields |= {f.name for f in attrs.fields(base)}
    if attrs.has(cls):
        for field in attrs.fields(cls):
            if not field.name.startswith("_") and field.name not in inherited_fields:
                yield field.name, field
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        yield from ((name, getattr(cls, name)) for name in cls._fields if not name.startswith("_"))
        inherited_fields |= set(cls._fields)
    if issubclass(cls, enum.Enum):
        for name in cls.__members__:
            yield name, cls.__members__[name]
        return
    for name, member in vars(cls).items():
        if name.startswith("_") or name in inherited_fields:
            continue
        if isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(member):
            yield name, member


def public_classes() -> dict[type, str]:
    """Every class of ours a host can reach, with where it was reached from."""
    found: dict[type, str] = {}
    queue: list[type] = []

    def reach(cls: type, via: str) -> None:
        if cls not in found:
            found[cls] = via
            queue.append(cls)

    for name in entitlements.__all__:
        obj = getattr(entitlements, name)
        if _ours(obj):
            reach(obj, f"entitlements.{name}")
    for name in errors.__all__:  # every error a call can raise, exported at the root or not
        reach(getattr(errors, name), f"entitlements.errors.{name}")
    ents = Entitlements(MemoryStore())
    try:
        built_on_first_use = [
            name
            for name, member in vars(Entitlements).items()
            if isinstance(member, property) and not name.startswith("_")
        ]
        names = [*Entitlements.__slots__, *built_on_first_use]
        groups = {name: getattr(ents, name) for name in names if hasattr(ents, name)}
        for name, value in groups.items():
            if not name.startswith("_") and name not in WIRING and _ours(type(value)):
                reach(type(value), f"ents.{name}")
    finally:
        ents.close()
    while queue:
        cls = queue.pop()
        for base in cls.__mro__[1:]:  # a group built of parts: each part documents its own
            if _ours(base):
                reach(base, f"{cls.__name__} (base)")
        constructed = not found[cls].startswith("ents.")  # hosts never build the groups
        signatures: list[tuple[str, object]] = [("__init__", cls.__init__)] if constructed else []
        signatures += [
            (name, member.fget if isinstance(member, property) else member)
            for name, member in _own_members(cls)
            if not isinstance(member, attrs.Attribute | enum.Enum)
        ]
        if attrs.has(cls):
            signatures.append(("fields", cls))
        for name, function in signatures:
            if isinstance(function, staticmethod | classmethod):
                function = function.__func__
            for hint in _hints(function).values():
                for reached in _hinted_classes(hint):
                    reach(reached, f"{cls.__name__}.{name}")
    return found


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


IMPLEMENTS = {"MemoryStore": "ports.Store", "SqlStore": "ports.Store"}
"""Stores document their methods once, on the port they implement."""


@pytest.fixture(scope="module")
def source() -> griffe.Module:
    return griffe.load("entitlements", search_paths=[str(ROOT / "src")])


def _docstring(source: griffe.Module, cls: type, name: str | None = None) -> str:
    """What mkdocstrings will print for the class or member: griffe reads attribute
    docstrings (a string after a field) that ``__doc__`` never sees."""
    found = source[_path(cls).removeprefix("entitlements.")]
    if name is not None:
        member = found.members.get(name)
        if member is None or not member.docstring:
            port = IMPLEMENTS.get(cls.__name__)
            member = source[port].members.get(name) if port else None
        found = member
    return "" if found is None or found.docstring is None else found.docstring.value.strip()


@pytest.fixture(scope="module")
def anchors(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    site = tmp_path_factory.mktemp("site")
    config = mkdocs_config.load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site))
    mkdocs_build.build(config)
    found: set[str] = set()
    for page in (site / "reference").rglob("*.html"):
        found |= set(re.findall(r'id="(entitlements\.[^"]+)"', page.read_text("utf-8")))
    return found


def test_the_public_surface_is_found():
    classes = {cls.__name__ for cls in public_classes()}
    assert {"Entitlements", "Contracts", "Limit", "SignerSpec", "Snapshot"} <= classes


def test_every_public_class_and_member_is_in_the_reference(anchors, source):
    missing = []
    for cls, via in public_classes().items():
        path = _path(cls)
        if path not in anchors:
            missing.append(f"{path} (reached from {via})")
            continue
        for name, _member in _own_members(cls):
            if f"{path}.{name}" not in anchors:
                missing.append(f"{path}.{name}")
        for name in _instance_attributes(source, cls):
            if f"{path}.{name}" not in anchors:
                missing.append(f"{path}.{name}")
    assert not missing, "not in the API reference:\n" + "\n".join(sorted(missing))


def _instance_attributes(source: griffe.Module, cls: type) -> list[str]:
    """Public attributes set in ``__init__`` (an error's typed facts, the groups of
    `Entitlements`): only the source shows them."""
    if issubclass(cls, enum.Enum):
        return []
    found = source[_path(cls).removeprefix("entitlements.")]
    return [
        name
        for name, member in found.members.items()
        if not member.is_alias
        and member.is_attribute
        and not name.startswith("_")
        and name not in vars(cls)
        and not (attrs.has(cls) and name in attrs.fields_dict(cls))
    ]


def test_every_public_class_method_and_field_has_a_docstring(source):
    """Enum members are exempt: the enum's docstring says what its values mean."""
    undocumented = []
    for cls in public_classes():
        if not _docstring(source, cls):
            undocumented.append(_path(cls))
        names = [name for name, member in _own_members(cls) if not isinstance(member, enum.Enum)]
        for name in names + _instance_attributes(source, cls):
            if not _docstring(source, cls, name):
                undocumented.append(f"{_path(cls)}.{name}")
    assert not undocumented, "no docstring:\n" + "\n".join(sorted(undocumented))
