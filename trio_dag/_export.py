"""The text exports of a DAG: Graphviz DOT and Mermaid, from its tasks and edges.

Rendering only: ``DAG.to_dot`` and ``DAG.to_mermaid`` pass ``DAG._export()``,
``(name, tags)`` per task and ``(dependency, dependent, order_only)`` per
distinct edge, and get the text back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

__all__ = ["render_dot", "render_mermaid"]

Tasks: TypeAlias = Iterable[tuple[str, tuple[str, ...]]]
Edges: TypeAlias = Iterable[tuple[int, int, bool]]


def render_dot(tasks: Tasks, edges: Edges) -> str:
    """DOT text: tasks by name and tags, order-only edges dashed."""
    lines = ["digraph trio_dag {", "  node [shape=box];"]
    for i, (name, tags) in enumerate(tasks):
        label = _dot_escape(name)
        if tags:
            label += "\\n" + _dot_escape("[" + ", ".join(tags) + "]")
        lines.append(f'  t{i} [label="{label}"];')
    for j, i, order_only in edges:
        lines.append(f"  t{j} -> t{i}{' [style=dashed]' if order_only else ''};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_mermaid(tasks: Tasks, edges: Edges) -> str:
    """A Mermaid flowchart: tasks by name and tags, order-only edges dotted."""
    lines = ["flowchart TD"]
    for i, (name, tags) in enumerate(tasks):
        label = _mermaid_escape(name)
        if tags:
            label += "<br>" + _mermaid_escape("[" + ", ".join(tags) + "]")
        lines.append(f'    t{i}["{label}"]')
    for j, i, order_only in edges:
        lines.append(f"    t{j} {'-.->' if order_only else '-->'} t{i}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    """*text* for a double-quoted DOT string: backslashes, quotes and newlines escaped."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


_MERMAID_ESCAPES: Final = str.maketrans(
    {"#": "#35;", '"': "#quot;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "`": "#96;"}
)


def _mermaid_escape(text: str) -> str:
    """*text* for a quoted Mermaid label: entity codes for the characters that end or
    format it, ``<br>`` for newlines."""
    text = text.translate(_MERMAID_ESCAPES)
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")
