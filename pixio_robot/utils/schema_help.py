"""Field documentation for `--help`: every key of an entry's schema with its type, default and the
comment written beside the field in the dataclass (`key: type = default  # what it means`).

    python -m pixio_robot.rl --help        # hydra's page, then "== Keys ==" from pixio_robot/rl/config.py

The dataclass source is the one place a key is documented; `run_app(app, schema=...)` prints
this listing after hydra's own help page.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^#=]+(?:=[^#]*)?#\s?(.*)$")
_CONT = re.compile(r"^\s+#\s?(.*)$")


def field_comments(cls: type) -> dict[str, str]:
    """{field: its trailing comment} from `cls`'s source; a comment line right below it, indented
    further than the field, continues it."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    last, indent = None, 0
    for line in lines:
        m = _FIELD.match(line)
        if m and m.group(1) in names:
            last, indent = m.group(1), len(line) - len(line.lstrip())
            out[last] = m.group(2).strip()
            continue
        c = _CONT.match(line)
        if c and last is not None and len(line) - len(line.lstrip()) > indent:  # indented under the comment
            out[last] += " " + c.group(1).strip()
            continue
        last = None
    return out


def _unwrap(tp):
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _type_name(tp) -> str:
    s = getattr(tp, "__name__", None) if not typing.get_args(tp) else None
    return s or str(tp).replace("typing.", "")


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "???"


def field_docs(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, comment) for every field of `cls`, nested dataclasses expanded."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, f.type)
        inner = _unwrap(tp)
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            doc = comments.get(f.name) or (inspect.getdoc(inner) or "").split("\n")[0]
            out.append((prefix + f.name, inner.__name__, "", doc))
            out += field_docs(inner, prefix + f.name + ".")
            continue
        default = _default(f)
        out.append((prefix + f.name, _type_name(tp), "null" if default is None else repr(default),
                     comments.get(f.name, "")))
    return out


def format_help(cls: type) -> str:
    rows = field_docs(cls)
    width = min(max(len(k) for k, *_ in rows), 34)
    lines = [f"== Keys ({cls.__module__}.{cls.__name__}; override with key=value) =="]
    for key, tp, default, doc in rows:
        head = f"{key:<{width}}  {tp}" + (f" = {default}" if default else "")
        lines.append(f"{head}{'  # ' + doc if doc else ''}")
    return "\n".join(lines)


__all__ = ["field_comments", "field_docs", "format_help"]
