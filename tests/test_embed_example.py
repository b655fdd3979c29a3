"""examples/embed_corpus.py end to end: a small corpus in, its vectors in SQLite, a query answered.

The example runs as a user runs it, in a subprocess, on a directory made
here of files on clearly different topics; a rerun takes the split and embed
tasks of unchanged files from its cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed_corpus.py"


def chunk_count(data: bytes) -> int:
    """How many chunks the example cuts *data* into (its split_source)."""
    from test_embed_split import load_example

    return len(load_example().split_source(data))


JSON_FILE = '''\
"""Decode JSON documents: parse the text of a JSON document into Python objects."""

import json


class JSONDecodeError(ValueError):
    """A JSON document could not be decoded: the message says where parsing stopped."""


def decode_document(text):
    """Decode a JSON document: parse its objects, arrays, strings and numbers."""
    try:
        return json.loads(text)
    except ValueError as error:
        raise JSONDecodeError(f"invalid JSON document: {error}") from error


def decode_lines(lines):
    """Decode one JSON document per line (JSON Lines) into a list of objects."""
    return [decode_document(line) for line in lines if line.strip()]
'''

SOCKET_FILE = '''\
"""Open TCP sockets to a host and port, send bytes and receive the reply."""

import socket


def connect(host, port, timeout=5.0):
    """Open a TCP connection to host:port and return the connected socket."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_all(sock, payload):
    """Send every byte of the payload over the socket."""
    sock.sendall(payload)


def receive(sock, size=4096):
    """Receive up to size bytes from the peer; b"" once it closed the connection."""
    return sock.recv(size)


def serve(port):
    """Listen on a port and accept one client connection."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    return listener.accept()
'''

DATES_FILE = '''\
"""Calendar arithmetic: add days to dates, count weekdays, find the last day of a month."""

import calendar
import datetime


def add_days(day, count):
    """The date count days after the given day."""
    return day + datetime.timedelta(days=count)


def last_day_of_month(year, month):
    """The last calendar day of the month."""
    return datetime.date(year, month, calendar.monthrange(year, month)[1])


def weekdays_between(start, end):
    """How many weekdays (Monday to Friday) lie between two dates."""
    days = (end - start).days
    return sum(1 for k in range(days) if (start + datetime.timedelta(days=k)).weekday() < 5)
'''


def make_corpus(root: Path) -> dict[str, bytes]:
    """Write the corpus under *root*; return what the example must store, by path."""
    files = {
        "decoding/json_documents.py": JSON_FILE,
        "network/sockets.py": SOCKET_FILE,
        # Over 1 KiB, so more than one chunk: the chunks must join up again.
        "time/dates.py": DATES_FILE + "\n" + DATES_FILE.replace("def ", "def other_"),
        "empty/__init__.py": "",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    # Left out: not .py, and inside site-packages.
    (root / "notes.txt").write_text("decode a JSON document\n", encoding="utf-8")
    (root / "site-packages").mkdir()
    (root / "site-packages" / "vendored.py").write_text(JSON_FILE, encoding="utf-8")
    return {rel: text.encode() for rel, text in files.items()}


# A skip mark, not importorskip: importing wordllama configures the root logger.
needs_wordllama = pytest.mark.skipif(
    importlib.util.find_spec("wordllama") is None,
    reason="needs the embed extra: pip install -e '.[embed]'",
)


def run_example(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the example as a user does; fail with its stderr if it fails."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done


def top_hits(stdout: str) -> list[str]:
    """The paths of the query's answer, best first."""
    return [m[0] for m in re.findall(r"^\s+-?\d\.\d+\s+(\S+):(\d+)\s", stdout, re.MULTILINE)]


@needs_wordllama
def test_embed_corpus_stores_every_chunk_and_answers_the_query(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = make_corpus(corpus)
    db_path = tmp_path / "vectors.sqlite3"
    trace = tmp_path / "trace.json"

    done = run_example(
        str(corpus),
        *("--query", "decode a JSON document", "--db", str(db_path), "--trace", str(trace)),
        *("--batch", "4", "--cache", str(tmp_path / "cache.sqlite3")),
    )

    with sqlite3.connect(db_path) as db:
        stored = dict(db.execute("SELECT path, bytes FROM files"))
        assert stored == {rel: len(data) for rel, data in expected.items()}
        for rel, data in expected.items():
            rows = db.execute(
                "SELECT line, text, length(vector) FROM chunks JOIN files ON files.id = "
                "chunks.file WHERE files.path = ? ORDER BY chunks.id",
                (rel,),
            ).fetchall()
            text = data.decode()
            assert len(rows) == chunk_count(data)
            assert "".join(chunk for _, chunk, _ in rows) == text
            offset = 0
            for line, chunk, size in rows:
                assert line == text.count("\n", 0, offset) + 1
                assert size == 256 * 4  # float32 vectors of WordLlama's 256 dimensions
                offset += len(chunk)

    events = json.loads(trace.read_text(encoding="utf-8"))["traceEvents"]
    # One slice per batched call, named after its first task; args["tasks"]
    # lists every task the call served.
    names = {
        name
        for event in events
        if event["ph"] == "X"
        for name in event["args"].get("tasks", [event["name"]])
    }
    assert "embed:decoding/json_documents.py#0" in names
    assert "store:empty/__init__.py" in names

    assert "SUCCEEDED" in done.stdout  # the summary
    hits = top_hits(done.stdout)
    assert 1 < len(hits) <= 5
    assert hits[0] == "decoding/json_documents.py"
    assert "chunks/s" in done.stderr  # the progress line


@needs_wordllama
def test_embed_corpus_finds_the_json_decoder_in_the_standard_library(tmp_path: Path) -> None:
    json_package = Path(sysconfig.get_paths()["stdlib"]) / "json"
    done = run_example(
        str(json_package),
        *("--query", "decode a JSON document", "--db", ":memory:", "--no-cache"),
        *("--trace", str(tmp_path / "trace.json")),
    )
    hits = top_hits(done.stdout)
    assert len(hits) == 5
    assert "decoder.py" in hits


def load_chunks(data: bytes) -> list[str]:
    """The texts of the chunks the example cuts *data* into."""
    from test_embed_split import load_example

    return [chunk.text for chunk in load_example().split_source(data)]


def cache_counts(stdout: str) -> dict[str, tuple[int, int]]:
    """The example's line of cached tasks: kind -> (CACHED, ran)."""
    (line,) = re.findall(r"^cached tasks: (.*)$", stdout, re.MULTILINE)
    return {
        kind: (int(hits), int(ran))
        for kind, hits, ran in re.findall(r"(\w+) (\d+) CACHED, (\d+) ran", line)
    }


def stored_rows(db_path: Path) -> list[tuple[str, int, str, bytes]]:
    """Every chunk the example stored, with its file's path, by path and line."""
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT files.path, line, text, vector FROM chunks JOIN files ON files.id = "
            "chunks.file ORDER BY files.path, line"
        ).fetchall()


@needs_wordllama
def test_embed_corpus_rerun_embeds_only_the_edited_file(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = make_corpus(corpus)
    chunks = {rel: chunk_count(data) for rel, data in expected.items()}
    # No --cache: the default file, under $XDG_CACHE_HOME.
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    cache = tmp_path / "xdg" / "trio_dag" / "embed_corpus.sqlite3"

    def run(name: str) -> subprocess.CompletedProcess[str]:
        db = str(tmp_path / f"{name}.sqlite3")
        trace = str(tmp_path / f"{name}.json")
        return run_example(str(corpus), "--db", db, "--trace", trace, "--batch", "4", env=env)

    cold = run("cold")
    assert cache.is_file()
    assert cache_counts(cold.stdout) == {"split": (0, 4), "embed": (0, sum(chunks.values()))}

    # An unchanged file's split comes from the cache with its vectors: it adds
    # no embed task (the split adds them as it runs, and joins them).
    warm = run("warm")
    assert cache_counts(warm.stdout) == {"split": (4, 0), "embed": (0, 0)}
    assert "CACHED" in warm.stdout  # the summary
    # The table is rebuilt from the cached outputs: the same rows, the same vectors.
    assert stored_rows(tmp_path / "warm.sqlite3") == stored_rows(tmp_path / "cold.sqlite3")

    edited = "network/sockets.py"
    path = corpus / edited
    path.write_text(path.read_text().replace("TCP", "UDP"), encoding="utf-8")
    rerun = run("edited")
    # The edited file's split runs again; its chunks without "TCP" are as they
    # were, and their embeddings come from the cache.
    new_chunks = load_chunks(path.read_bytes())
    same = sum("TCP" not in text for text in load_chunks(expected[edited]))
    assert cache_counts(rerun.stdout) == {"split": (3, 1), "embed": (same, len(new_chunks) - same)}
    rows = stored_rows(tmp_path / "edited.sqlite3")
    assert [r for r in rows if r[0] != edited] == [
        r for r in stored_rows(tmp_path / "cold.sqlite3") if r[0] != edited
    ]
    assert "UDP" in "".join(text for rel, _, text, _ in rows if rel == edited)


@needs_wordllama
def test_embed_corpus_no_cache_runs_everything_and_writes_no_cache(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_corpus(corpus)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    args = ["--db", ":memory:", "--trace", str(tmp_path / "trace.json"), "--no-cache"]
    for _ in range(2):
        done = run_example(str(corpus), *args, env=env)
        assert "cached tasks:" not in done.stdout
        assert "CACHED" not in done.stdout
    assert not (tmp_path / "xdg").exists()


def test_embed_corpus_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    # A None in sys.modules makes "import wordllama" raise ImportError.
    script = textwrap.dedent(
        f"""
        import runpy, sys
        sys.modules["wordllama"] = None
        sys.argv = ["embed_corpus.py", {str(tmp_path)!r}]
        runpy.run_path({str(EXAMPLE)!r}, run_name="__main__")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'trio_dag[embed]'" in done.stderr
    assert done.stdout == ""
