"""The text exports of a DAG: Graphviz DOT and Mermaid, from its tasks and edges.

Rendering only: ``DAG.to_dot`` and ``DAG.to_mermaid`` pass ``DAG._export()``,
``(name, tags)`` per task and ``(dependency, dependent, order_only)`` per
distinct edge, and get the text back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, TypeAlias

__all__ = ["render_dot", "render_mermaid"]

Tasks: TypeAlias = Iterable[tuple[str, tuple[str, ...]]]
Edges: TypeAlias = Iterable[tuple[int, int, bool]]


def render_dot(tasks: Tasks, edges: Edges) -> str:
    """DOT text: tasks by name and tags, order-only edges dashed."""
    lines = ["digraph trio_dag {", "  node [shape=box];"]
    for i, label in enumerate(_labels(tasks, _dot_escape, "\\n")):
        lines.append(f'  t{i} [label="{label}"];')
    for j, i, order_only in edges:
        lines.append(f"  t{j} -> t{i}{' [style=dashed]' if order_only else ''};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_mermaid(tasks: Tasks, edges: Edges) -> str:
    """A Mermaid flowchart: tasks by name and tags, order-only edges dotted."""
    lines = ["flowchart TD"]
    for i, label in enumerate(_labels(tasks, _mermaid_escape, "<br>")):
        lines.append(f'    t{i}["{label}"]')
    for j, i, order_only in edges:
        lines.append(f"    t{j} {'-.->' if order_only else '-->'} t{i}")
    return "\n".join(lines) + "\n"


def _labels(tasks: Tasks, escape: Callable[[str], str], newline: str) -> Iterator[str]:
    """Each task's escaped label: its name, then its tags in brackets on a new line."""
    for name, tags in tasks:
        label = escape(name)
        if tags:
            label += newline + escape("[" + ", ".join(tags) + "]")
        yield label


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
