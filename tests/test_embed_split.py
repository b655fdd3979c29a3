"""The main job's content split: chunks start at top-level definitions, none too long.

``examples/embed_corpus.py`` cuts each file once it has read it, so the
number of embed tasks follows from what the file holds. These tests load
the example as a module (with WordLlama hidden: importing it configures the
root logger, and the split does not need it).
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed_corpus.py"


_LOADED: list[ModuleType] = []


def load_example() -> ModuleType:
    """The example as a module, loaded once."""
    if not _LOADED:
        spec = importlib.util.spec_from_file_location("embed_corpus_split", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(sys.modules, "wordllama", None)  # type: ignore[arg-type]
            spec.loader.exec_module(module)
        _LOADED.append(module)
    return _LOADED[0]


@pytest.fixture
def example() -> ModuleType:
    return load_example()


def pieces(example: ModuleType, data: bytes, max_bytes: int) -> list[bytes]:
    return [data[a:b] for a, b in pairwise(example.cuts(data, max_bytes))]


SOURCE = b'''"""A module."""

import os

CONSTANT = 1


def first():
    return 1


# A comment about the class.
@decorated
@twice
class Second:
    def method(self):
        return 2


async def third():
    return 3
'''


def test_each_definition_starts_a_chunk_with_its_decorators_and_comments(
    example: ModuleType,
) -> None:
    starts = example.section_starts(SOURCE)
    got = [SOURCE[a:b] for a, b in pairwise([*starts, len(SOURCE)])]
    assert [p.split(b"\n", 1)[0] for p in got] == [
        b'"""A module."""',
        b"def first():",
        b"# A comment about the class.",
        b"async def third():",
    ]


def test_small_sections_are_packed_together_up_to_the_maximum(example: ModuleType) -> None:
    assert pieces(example, SOURCE, max_bytes=10_000) == [SOURCE]
    got = pieces(example, SOURCE, max_bytes=120)
    assert b"".join(got) == SOURCE
    assert all(len(p) <= 120 for p in got)
    assert len(got) < 4


def test_line_numbers_count_from_one_at_each_chunk_start(example: ModuleType) -> None:
    chunks = example.split_source(SOURCE, 40)
    lines = SOURCE.decode().splitlines()
    for chunk in chunks:
        assert lines[chunk.line - 1] == chunk.text.splitlines()[0]


def test_a_file_without_definitions_is_cut_by_size_at_line_starts(example: ModuleType) -> None:
    data = b"".join(b"VALUE_%d = %d\n" % (k, k) for k in range(500))
    got = pieces(example, data, max_bytes=256)
    assert b"".join(got) == data
    assert all(len(p) <= 256 for p in got)
    assert all(p.endswith(b"\n") for p in got)
    assert len(got) == -(-len(data) // 256) or len(got) == -(-len(data) // 256) + 1


def test_one_huge_function_is_cut_and_the_next_definition_starts_afresh(
    example: ModuleType,
) -> None:
    body = b"".join(b"    x_%d = %d\n" % (k, k) for k in range(400))
    data = b"def huge():\n" + body + b"def small():\n    return 1\n"
    got = pieces(example, data, max_bytes=512)
    assert b"".join(got) == data
    assert all(len(p) <= 512 for p in got)
    assert got[0].startswith(b"def huge():")
    assert got[-1] == b"def small():\n    return 1\n"


def test_a_line_longer_than_the_maximum_is_cut_between_characters(example: ModuleType) -> None:
    data = ("x = '" + "é" * 1000 + "'\n").encode()
    got = pieces(example, data, max_bytes=101)
    assert b"".join(got) == data
    assert all(len(p) <= 102 for p in got)
    for p in got:
        p.decode("utf-8")  # no character split between chunks


def test_bytes_that_are_not_utf8_become_replacement_characters(example: ModuleType) -> None:
    data = b"def f():\n    return b'\xff\xfe'\n\ndef g():\n    return '\xe9'\n"
    chunks = example.split_source(data, 20)
    text = "".join(c.text for c in chunks)
    assert "\ufffd" in text
    assert text.replace("\ufffd", "") == data.decode("utf-8", "ignore")


def test_an_empty_file_has_no_chunk(example: ModuleType) -> None:
    assert example.split_source(b"") == []


@given(st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode), st.integers(8, 400))
def test_cuts_cover_the_bytes_in_order_within_the_maximum(data: bytes, max_bytes: int) -> None:
    got = load_example().cuts(data, max_bytes)
    assert got[0] == 0 and got[-1] == len(data)
    assert all(a < b for a, b in pairwise(got)) or data == b""
    for a, b in pairwise(got):
        # Over the maximum only to finish a UTF-8 character (at most 3 bytes more).
        assert b - a <= max_bytes + 3


def test_the_standard_library_splits_into_chunks_within_the_maximum(
    example: ModuleType,
) -> None:
    root = Path(sysconfig.get_path("stdlib")) / "json"
    for source in example.find_sources(root):
        data = source.path.read_bytes()
        got = pieces(example, data, example.CHUNK_BYTES)
        assert b"".join(got) == data
        assert all(len(p) <= example.CHUNK_BYTES for p in got)
