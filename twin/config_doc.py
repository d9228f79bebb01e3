"""What every config key means: its default, unit and one-line meaning (``twin config <scenario>``).

The meaning of a field is its *attribute docstring*, the string literal right after the field in the
class body (the convention Sphinx and PEP 257 use)::

    @dataclass(frozen=True, slots=True)
    class Fleet:
        count: int = 40
        \"\"\"Robotaxis in the city.\"\"\"

or, failing that, its entry in the ``Attributes:`` section of the class docstring (Google style). The
unit comes from the field name's suffix (``_m`` metres, ``_s`` seconds, ``_j`` joules, ``_bps`` …);
a docstring that starts with a unit in brackets (``[Mparam] Parameters, in millions.``) overrides it
(``[-]``: no unit), for names whose suffix means something else.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import tomli_w

# Longest suffix first: ``_flops_per_s`` before ``_s``, ``_dbm`` before ``_db``.
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_kg_per_kwh", "kg/kWh"),
    ("_flops_per_s", "FLOP/s"),
    ("_gflops", "GFLOP"),
    ("_bytes", "B"),
    ("_bits", "bit"),
    ("_bps", "bit/s"),
    ("_mps", "m/s"),
    ("_dbm", "dBm"),
    ("_db", "dB"),
    ("_ghz", "GHz"),
    ("_hz", "Hz"),
    ("_mb", "Mbit"),
    ("_m", "m"),
    ("_s", "s"),
    ("_j", "J"),
    ("_w", "W"),
    ("_g", "g"),
)
_UNIT_MARK = re.compile(r"^\[([^\]]*)\]\s*")
_ATTRIBUTE = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
_DOCS: dict[type, dict[str, str]] = {}  # field docs by class (the source does not change in a process)


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One overridable key of a scenario's config, as ``twin config`` shows it."""

    key: str
    default: Any
    type: str
    unit: str
    meaning: str


def describe_config(config: Any) -> list[ConfigKey]:
    """Every leaf key of a (nested) config dataclass instance, in field order, with its documentation."""
    out: list[ConfigKey] = []
    _walk(config, "", out)
    return out


def _walk(config: Any, prefix: str, out: list[ConfigKey]) -> None:
    cls = type(config)
    docs = field_docs(cls)
    hints = _hints(cls)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _walk(value, key + ".", out)
            continue
        unit, meaning = split_unit(docs.get(f.name, ""))
        type_name = _type_name(hints[f.name]) if f.name in hints else str(f.type)
        out.append(ConfigKey(key, value, type_name, unit_of(f.name) if unit is None else unit, meaning))


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


def _type_name(tp: Any) -> str:
    """How a field type reads in the table: ``float``, ``int or None``, ``one of 'a', 'b'``."""
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def unit_of(field_name: str) -> str:
    """The unit a field name's suffix says (``deadline_s`` → ``s``), or ``""``."""
    for suffix, unit in UNIT_SUFFIXES:
        if f"_{field_name}".endswith(suffix):
            return unit
    return ""


def split_unit(doc: str) -> tuple[str | None, str]:
    """``(unit, meaning)`` of a one-line doc: a leading ``[unit]`` is the unit (``[-]``: none)."""
    match = _UNIT_MARK.match(doc)
    if match is None:
        return None, doc
    unit = match.group(1).strip()
    return ("" if unit == "-" else unit), doc[match.end() :]


def field_docs(cls: type) -> dict[str, str]:
    """One-line meaning of each documented field of a class (its bases' first, overridden by its own).

    Attribute docstrings win over ``Attributes:`` entries of the class docstring. Fields without
    either are missing from the result; a class whose source cannot be read has none.
    """
    cached = _DOCS.get(cls)
    if cached is not None:
        return cached
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        docs.update(_attributes_section(inspect.getdoc(klass) or "") if klass.__doc__ else {})
        docs.update(_attribute_docstrings(klass))
    _DOCS[cls] = docs
    return docs


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """``field → first paragraph`` of the string literals that follow annotated fields in the class body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    body = next((node.body for node in tree.body if isinstance(node, ast.ClassDef)), [])
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = _first_paragraph(inspect.cleandoc(following.value.value))
    return docs


def _attributes_section(docstring: str) -> dict[str, str]:
    """``name → text`` of the entries of a Google-style ``Attributes:`` section."""
    docs: dict[str, str] = {}
    lines = docstring.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return docs
    indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break
        indent = depth if indent is None else indent
        match = _ATTRIBUTE.match(line.strip())
        if depth == indent and match is not None:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current is not None:
            docs[current] = f"{docs[current]} {line.strip()}"
    return docs


def _first_paragraph(text: str) -> str:
    """The first paragraph of ``text`` as one line."""
    return " ".join(text.split("\n\n", 1)[0].split())


def documented_toml(config: Any) -> str:
    """The config as TOML, each key preceded by a comment with its unit and meaning.

    ``twin run <scenario> --config`` reads it back as it is; unset (``None``) keys are commented out.
    """
    sections: dict[str, list[ConfigKey]] = {}
    for item in describe_config(config):
        section, _, _ = item.key.rpartition(".")
        sections.setdefault(section, []).append(item)
    blocks = []
    for section, items in sorted(sections.items(), key=lambda kv: kv[0] != ""):
        lines = [f"[{section}]"] if section else []
        for item in items:
            name = item.key.rpartition(".")[2]
            unit = f" [{item.unit}]" if item.unit else ""
            lines.append(f"# {item.meaning or '(undocumented)'}{unit}")
            if item.default is None:
                lines.append(f"# {name} =  (unset; {item.type})")
            else:
                value = list(item.default) if isinstance(item.default, tuple) else item.default
                lines.append(tomli_w.dumps({name: value}).rstrip("\n"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
