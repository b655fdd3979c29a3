"""Embed a corpus of Python files with a real model, store the vectors, answer a query.

The corpus is the standard library's own ``.py`` files (without
``site-packages``), or the directory given. Each file is a small pipeline of
the DAG::

    read (thread) -> split (inline) -> store
                       `-> embed, one task per chunk (added by the split, joined)

A split cuts its file at top-level ``def``/``class`` boundaries (at most
``CHUNK_BYTES`` a chunk), so its chunk count is known only once the file is
read: it adds one embed task per chunk to the running run
(``trio_dag.current_run().add``) and returns their handles, which joins them:
its output becomes the chunks and their vectors, and the store task after it
gets both.

``embed`` and ``store`` are ``@trio_dag.batched``: the engine gathers ready
chunks, whatever file they come from, into one call of the model (WordLlama;
a call is one task body against ``--limit``, however many chunks it holds),
and finished files into one SQLite transaction (one writer at a time: the
``db`` resource). Then the query's 5 nearest chunks are
read back from the database. Progress goes to stderr; the run's summary, a
Chrome trace (open it in Perfetto) and the answer follow.

The split and embed tasks are cached (``cache=True``; their ``version=``
names the model: WordLlama's release, weights and dimension, which
their keys cannot see) in a ``trio_dag.Cache`` file, by default
``trio_dag/embed_corpus.sqlite3`` under ``$XDG_CACHE_HOME`` (or
``~/.cache``). Reading a file is not cached: it is how a change is seen. A
file whose bytes did not change gives its split the same input, so the split
comes from the cache with its chunks' vectors (and adds no embed task); an
edited file's split runs again, and its chunks whose text did not change
come from the cache. The vector table is rebuilt from the tasks' outputs on every
run. ``--no-cache`` runs everything.

Where the model runs: in a worker thread of this process by default;
``--workers N`` in N worker processes (``run_in="process"``, trio-parallel);
``--dask ADDRESS`` on the Dask cluster whose scheduler is at ADDRESS, or
``--dask local`` on a ``LocalCluster`` of 2 worker processes (or
``--workers``). The same DAG runs in each: only the embed tasks' ``run_in``
and the run's ``executors=`` change. Each batch is one submission, and each
process loads the model once, on its first batch (:func:`local_model`); a
Dask worker gets this file from the client (``upload_file``) to import it.

    pip install 'trio_dag[embed]'            # and 'trio_dag[dask]' for --dask
    python examples/embed_corpus.py [DIRECTORY] [--query TEXT] [--db PATH]
                                    [--cache PATH | --no-cache]
                                    [--trace PATH] [--limit N] [--batch N]
                                    [--workers N] [--dask ADDRESS|local]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import sqlite3
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

import trio_dag
from trio_dag.events import Event, TaskFinished, TaskState

try:
    import numpy as np
    import wordllama
except ImportError as error:  # main() says what to install
    MISSING: ImportError | None = error
else:
    MISSING = None

INSTALL_HINT = (
    "examples/embed_corpus.py needs the WordLlama model: pip install 'trio_dag[embed]' "
    "(from a checkout: pip install -e '.[embed]')"
)
CHUNK_BYTES = 1024
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
STORE_BATCH = 64
TOP = 5


class SourceFile(NamedTuple):
    """A file of the corpus: where it is, its path relative to the corpus, its size."""

    path: Path
    rel: str
    size: int


class Chunk(NamedTuple):
    """A piece of a file: the line it starts on (from 1) and its text."""

    line: int
    text: str


class Hit(NamedTuple):
    """A chunk found by a query, with its cosine similarity to it."""

    score: float
    path: str
    line: int
    text: str


def find_sources(root: Path) -> list[SourceFile]:
    """The ``.py`` files under *root*, by path, leaving out ``site-packages``."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in names:
            if name.endswith(".py"):
                path = Path(folder, name)
                try:
                    size = path.stat().st_size
                except OSError:  # a dangling link
                    continue
                found.append(SourceFile(path, path.relative_to(root).as_posix(), size))
    return sorted(found, key=lambda f: f.rel)


DEFINITION_STARTS = (b"def ", b"async def ", b"class ")
PREAMBLE_STARTS = (b"@", b"#")


def section_starts(data: bytes) -> list[int]:
    """The offsets where *data*'s top-level sections start: 0 and each definition.

    A definition is a line that starts (in column 0) with ``def``, ``async
    def`` or ``class``; its section starts at the decorators and comment lines
    right above it, so they stay with what they describe.
    """
    starts = [0]
    lines = [0]
    at = data.find(b"\n") + 1
    while 0 < at < len(data):
        lines.append(at)
        at = data.find(b"\n", at) + 1
    for k, line in enumerate(lines):
        if k and data.startswith(DEFINITION_STARTS, line):
            first = k
            while first > 1 and data.startswith(PREAMBLE_STARTS, lines[first - 1]):
                first -= 1
            if lines[first] > starts[-1]:
                starts.append(lines[first])
    return starts


def character_start(data: bytes, at: int) -> int:
    """*at*, or the next offset after it that does not fall inside a UTF-8 character."""
    while at < len(data) and data[at] & 0xC0 == 0x80:
        at += 1
    return at


def cuts(data: bytes, max_bytes: int = CHUNK_BYTES) -> list[int]:
    """The offsets where *data*'s chunks start, and ``len(data)`` last.

    Whole top-level sections (see :func:`section_starts`) are packed into one
    chunk while it stays within *max_bytes*; a section longer than that is
    cut at line starts (a line longer than that at a character boundary), and
    the next section starts a chunk of its own. So every chunk starts where a
    section or a line does, and is at most *max_bytes* long, except where one
    UTF-8 character would be split; an empty file has no chunk.
    """
    if not data:
        return [0]
    sections = [*section_starts(data), len(data)]
    found = [0]
    sealed = False  # the open chunk is the tail of a cut section
    for begin, end in pairwise(sections):
        if not sealed and end - found[-1] <= max_bytes:  # joins the open chunk
            continue
        if begin > found[-1]:
            found.append(begin)
        sealed = False
        while end - found[-1] > max_bytes:  # too long on its own: cut at lines
            limit = found[-1] + max_bytes
            cut = data.rfind(b"\n", found[-1], limit) + 1
            if cut <= found[-1]:
                cut = character_start(data, limit)
            if cut >= end:
                break
            found.append(cut)
            sealed = True
    found.append(len(data))
    return found


def split_source(data: bytes, max_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut a Python file's bytes into chunks at top-level ``def``/``class`` boundaries.

    How many chunks a file has is known only once it is read: see :func:`cuts`
    for where they start. Bytes that are not UTF-8 are decoded with U+FFFD in
    their place; a file without definitions is cut by size alone.
    """
    chunks = []
    line = 1
    for begin, end in pairwise(cuts(data, max_bytes)):
        chunks.append(Chunk(line, data[begin:end].decode("utf-8", errors="replace")))
        line += data.count(b"\n", begin, end)
    return chunks


class Model:
    """WordLlama with the 256-dimension weights and the tokenizer its wheel ships.

    ``WordLlama.load()`` alone looks for the tokenizer in a folder the wheel
    does not have and then goes to the network; the package's own directory
    as ``cache_dir`` has it in ``tokenizers/``, so this loads offline.
    """

    CONFIG = "l2_supercat"
    DIM = 256

    def __init__(self) -> None:
        package = Path(wordllama.__file__).parent
        self._wl = wordllama.WordLlama.load(
            self.CONFIG, cache_dir=package, dim=self.DIM, disable_download=True
        )

    @property
    def identity(self) -> str:
        """What makes its vectors what they are, for the cache keys of embed tasks.

        A key hashes the embed function's code, not the model it calls: a
        model or a version of WordLlama that gives other vectors must give
        another ``version=``.
        """
        return f"wordllama {wordllama_version()} {self.CONFIG} dim={self.DIM}"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Model is not sent to other processes: each loads its own (local_model())"
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of *texts*, one row each (zeros for a text without tokens)."""
        # WordLlama pads each of its sub-batches to its longest text: sorted by
        # length, the padding (most of the work on unsorted code) stays small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows = self._wl.embed([texts[i] for i in order], batch_size=16)
        vectors = np.empty_like(rows)
        vectors[order] = rows
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def wordllama_version() -> str:
    """The installed WordLlama's version ("?" if its metadata is missing)."""
    try:
        return importlib.metadata.version("wordllama")
    except importlib.metadata.PackageNotFoundError:
        return "?"


_MODEL: Model | None = None
_MODEL_LOCK = threading.Lock()


def local_model() -> Model:
    """This process's model, loaded on first use: once per process, never pickled.

    The process is this one (threads), a worker process (``--workers``) or
    a Dask worker (``--dask``): each loads its own on its first batch and
    keeps it for the next ones.
    """
    global _MODEL
    with _MODEL_LOCK:  # two first batches in two threads load it once
        if _MODEL is None:
            _MODEL = Model()
        return _MODEL


def importable() -> ModuleType:
    """This module under the name workers import it by, ``embed_corpus``.

    Run as a script, it is ``__main__``: a worker process or a Dask worker
    has a ``__main__`` of its own, so the functions sent there must be this
    file's ``embed_corpus`` module (imported again, from its folder).
    """
    if __name__ != "__main__":
        return sys.modules[__name__]
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)  # worker processes are started with this sys.path
    return importlib.import_module(Path(__file__).stem)


@trio_dag.batched(max_size=64)
def embed_chunks(texts: list[str]) -> list[Any]:
    """Embed the batch's chunks, whatever file they come from, in one call of this
    process's model.

    Sync and at module level, so a batch can run where the embed tasks'
    ``run_in`` says: a worker thread, a worker process or a Dask worker,
    which import it from this module by name.
    """
    return list(local_model().embed(texts))


def default_cache() -> Path:
    """``trio_dag/embed_corpus.sqlite3`` under ``$XDG_CACHE_HOME``, or else ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    folder = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return folder / "trio_dag" / "embed_corpus.sqlite3"


def open_db(path: str) -> sqlite3.Connection:
    """The database at *path* (``:memory:`` works), with its tables made anew.

    The connection is used from worker threads, one at a time: the run's
    ``db`` resource has a capacity of 1.
    """
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.executescript(
        """
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        DROP TABLE IF EXISTS chunks;
        DROP TABLE IF EXISTS files;
        CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT UNIQUE, bytes INTEGER);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            file INTEGER REFERENCES files (id),
            line INTEGER,
            text TEXT,
            vector BLOB
        );
        """
    )
    return db


def write(db: sqlite3.Connection, files: list[tuple[SourceFile, list[Chunk], list[Any]]]) -> None:
    """Insert *files* with their chunks and vectors, in one transaction."""
    db.execute("BEGIN")
    try:
        for source, chunks, vectors in files:
            cursor = db.execute(
                "INSERT INTO files (path, bytes) VALUES (?, ?)", (source.rel, source.size)
            )
            db.executemany(
                "INSERT INTO chunks (file, line, text, vector) VALUES (?, ?, ?, ?)",
                [
                    (cursor.lastrowid, chunk.line, chunk.text, vector.tobytes())
                    for chunk, vector in zip(chunks, vectors, strict=True)
                ],
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Pipeline(NamedTuple):
    """The DAG of a corpus, and its split and store tasks (to follow progress).

    The embed tasks are added while the run goes on, by the splits: they are
    told by their names, ``embed:<file>#<k>`` (see :func:`is_embed`).
    """

    dag: trio_dag.DAG
    splits: frozenset[trio_dag.Handle[Any]]
    stores: frozenset[trio_dag.Handle[Any]]


def is_embed(task: trio_dag.Handle[Any]) -> bool:
    """Whether *task* is an embed task (one a split added)."""
    return task.name.startswith("embed:")


def pipeline(
    sources: list[SourceFile],
    model: Model,
    db: sqlite3.Connection,
    batch: int,
    cache: bool,
    run_in: str = "thread",
) -> Pipeline:
    """One read, one split and one store task per file; the splits add the embeds.

    A split cuts its file by content (:func:`split_source`), so how many
    chunks it has is known only once the file is read: it adds one embed
    task per chunk to the running run and returns their handles with the
    chunks, which joins them. Its output is then the chunks and their
    vectors, and the store task, which depends on the split, gets both.

    With *cache*, the split and embed tasks ask for the run's cache: a
    split's key holds the digest of its file's bytes and the model's
    identity, so an unchanged file's split comes from the cache with its
    vectors and adds no embed task; an embed's key holds its chunk's text
    and the model's identity. The embed tasks run their batches *run_in*
    (``"thread"``, ``"process"`` or an executor's name).
    """
    embed = importable().embed_chunks
    # The workers need only the function (they import it by name); the
    # batch size is this process's business.
    embed.max_size = batch

    @trio_dag.batched(max_size=STORE_BATCH)
    async def store(items: list[tuple[SourceFile, tuple[list[Chunk], list[Any]]]]) -> list[int]:
        """Write the items' files in one transaction; each task gets its chunk count."""
        files = [(source, chunks, vectors) for source, (chunks, vectors) in items]
        await trio.to_thread.run_sync(write, db, files)
        return [len(chunks) for _, chunks, _ in files]

    version = model.identity if cache else None

    def split(data: bytes, rel: str) -> tuple[list[Chunk], list[trio_dag.Handle[Any]]]:
        """Cut a file by content and add one embed task per chunk; join them."""
        chunks = split_source(data)
        add = trio_dag.current_run().add
        vectors = [
            add(
                embed,
                chunk.text,
                name=f"embed:{rel}#{k}",
                tags=("embed",),
                cache=cache,
                version=version,
                run_in=run_in,
            )
            for k, chunk in enumerate(chunks)
        ]
        return chunks, vectors

    dag = trio_dag.DAG()
    splits: list[trio_dag.Handle[Any]] = []
    stores: list[trio_dag.Handle[Any]] = []
    for source in sources:
        data = dag.add(
            read, source.path, name=f"read:{source.rel}", tags=("read",), run_in="thread"
        )
        parts = dag.add(
            split,
            data,
            source.rel,
            name=f"split:{source.rel}",
            tags=("split",),
            run_in="inline",
            cache=cache,
            version=version,
        )
        splits.append(parts)
        stores.append(
            dag.add(
                store,
                (source, parts),
                name=f"store:{source.rel}",
                tags=("store",),
                uses={"db": 1},
            )
        )
    return Pipeline(dag, frozenset(splits), frozenset(stores))


def read(path: Path) -> bytes:
    """The bytes of the file at *path* (its task runs it in a worker thread)."""
    return path.read_bytes()


class Progress:
    """An ``on_event`` callback: files stored, chunks embedded and chunks per second,
    on one line of *out*, redrawn at most every *every* seconds."""

    def __init__(self, plan: Pipeline, out: TextIO | None = None, every: float = 0.25) -> None:
        self.stores = plan.stores
        self.out = out if out is not None else sys.stderr
        self.every = every
        self.chunks = 0
        self.cached = 0
        self.files = 0
        self.began = time.monotonic()
        self.shown = -math.inf

    def __call__(self, event: Event) -> None:
        """Count a finished embed or store task; redraw the line when it is due."""
        if not isinstance(event, TaskFinished):
            return
        if is_embed(event.task):
            self.chunks += 1
            self.cached += event.state is TaskState.CACHED
        elif event.task in self.stores:
            self.files += 1
        else:
            return
        now = time.monotonic()
        if now - self.shown >= self.every:
            self.shown = now
            self.draw(now)

    def draw(self, now: float) -> None:
        """Write the line over the previous one."""
        rate = (self.chunks - self.cached) / max(now - self.began, 1e-9)
        self.out.write(
            f"\rfiles {self.files:,}/{len(self.stores):,}  chunks {self.chunks:,} "
            f"({self.cached:,} cached)  {rate:,.0f} chunks/s embedded "
        )
        self.out.flush()

    def close(self) -> None:
        """Draw the final counts and end the line."""
        self.draw(time.monotonic())
        self.out.write("\n")
        self.out.flush()


def search(db: sqlite3.Connection, model: Model, query: str, top: int = TOP) -> list[Hit]:
    """The *top* chunks of the database nearest to *query* (cosine similarity)."""
    ids: list[int] = []
    blobs: list[bytes] = []
    for chunk_id, blob in db.execute("SELECT id, vector FROM chunks ORDER BY id"):
        ids.append(chunk_id)
        blobs.append(blob)
    if not ids:
        return []
    matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
    scores = matrix @ model.embed([query])[0]
    best = np.argsort(-scores, kind="stable")[:top]
    hits = []
    for row in best:
        path, line, text = db.execute(
            "SELECT files.path, chunks.line, chunks.text FROM chunks "
            "JOIN files ON files.id = chunks.file WHERE chunks.id = ?",
            (ids[row],),
        ).fetchone()
        hits.append(Hit(float(scores[row]), path, line, text))
    return hits


def first_line(text: str, width: int = 60) -> str:
    """The first line of *text* that is not blank, stripped and cut to *width*."""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def batches(report: trio_dag.RunReport, tasks: Collection[trio_dag.Handle[Any]]) -> int:
    """How many batched calls ran *tasks*."""
    return len({report.batch(task) for task in tasks} - {None})


def embeds_of(report: trio_dag.RunReport) -> list[trio_dag.Handle[Any]]:
    """The embed tasks the run's splits added."""
    tasks = [*report.succeeded, *report.cached, *report.failed, *report.skipped, *report.cancelled]
    return [task for task in tasks if is_embed(task)]


def cache_line(report: trio_dag.RunReport, plan: Pipeline) -> str:
    """How many of the cached kinds of task came from the cache and how many ran.

    A split that came from the cache added no embed task: its output holds
    its chunks' vectors already.
    """
    cached = set(report.cached)
    parts = []
    for kind, tasks in (("split", list(plan.splits)), ("embed", embeds_of(report))):
        hits = len(cached.intersection(tasks))
        parts.append(f"{kind} {hits:,} CACHED, {len(tasks) - hits:,} ran")
    return "cached tasks: " + "; ".join(parts)


@contextmanager
def executors(workers: int | None, dask: str | None) -> Iterator[tuple[str, dict[str, Any], str]]:
    """The embed tasks' ``run_in``, the run's ``executors=`` and a description of them.

    *workers* alone: trio-parallel's worker processes (``"process"``, no
    executor to give). *dask*: a client of the scheduler at that address,
    or of a ``LocalCluster`` of *workers* (default 2) processes started
    here; either is closed on exit.
    """
    if dask is None:
        if workers is None:
            yield "thread", {}, "in a worker thread"
        else:
            yield "process", {}, f"in {workers} worker process{'es' if workers > 1 else ''}"
        return
    from distributed import Client, LocalCluster

    # Its INFO lines (a cluster starting and closing) would go to the root
    # logger's handler that importing WordLlama sets up.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    if dask == "local":
        cluster = LocalCluster(
            n_workers=workers or 2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # not 8787, which another cluster may have
        )
    try:
        try:
            client = Client(cluster if cluster is not None else dask)
        except OSError as error:  # no scheduler there, or it does not answer in time
            raise SystemExit(f"cannot reach the Dask scheduler at {dask}: {error}") from None
        with client:
            # The workers import embed_chunks from embed_corpus: a remote one
            # has no copy of this file unless it is sent.
            client.upload_file(__file__)
            threads = sum(client.nthreads().values())
            where = f"on the Dask cluster at {client.scheduler.address} ({threads} worker "
            where += "threads)" if threads != 1 else "thread)"
            yield "cluster", {"cluster": client}, where
    finally:
        if cluster is not None:
            cluster.close()


async def embed_all(plan: Pipeline, args: argparse.Namespace, **options: Any) -> trio_dag.RunReport:
    """Run the pipeline's DAG with *options*, at most ``--workers`` worker processes at once."""
    if args.workers is not None and args.dask is None:
        import trio_parallel

        # trio-parallel starts up to this many processes, by default the CPU count.
        trio_parallel.current_default_worker_limiter().total_tokens = args.workers
    return await trio_dag.run(plan.dag, **options)


def positive(text: str) -> int:
    """An argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: see the module's docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path(sysconfig.get_paths()["stdlib"]),
        help="the .py files to embed (default: the standard library, without site-packages)",
    )
    parser.add_argument(
        "--query", default="decode a JSON document", help="the text to find (default: %(default)r)"
    )
    parser.add_argument(
        "--db",
        help="the SQLite file to write, its tables replaced (default: corpus.sqlite3 in a new "
        "temporary directory; ':memory:' keeps nothing)",
    )
    caching = parser.add_mutually_exclusive_group()
    caching.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the cache of split and embed results, created if missing (default: "
        f"{default_cache()})",
    )
    caching.add_argument(
        "--no-cache", action="store_true", help="use no cache: split and embed every file"
    )
    parser.add_argument(
        "--trace",
        type=Path,
        default=Path("embed_corpus.trace.json"),
        help="where to write the Chrome trace of the run (default: %(default)s, in the "
        "current directory)",
    )
    parser.add_argument(
        "--limit",
        type=positive,
        default=4,
        help="task bodies (a model call is one) at once (default: %(default)s)",
    )
    parser.add_argument(
        "--batch", type=positive, default=64, help="chunks per model call (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=None,
        metavar="N",
        help="run the model in N worker processes (default: in a worker thread of this "
        "process); with --dask local, the cluster's number of workers",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run the model on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786), or 'local' for a LocalCluster of 2 worker processes here "
        "(needs pip install 'trio_dag[dask]')",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and args.dask not in (None, "local"):
        parser.error("--workers does not apply to a running cluster (--dask ADDRESS)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline and answer the query; the exit status is 1 if a task failed."""
    args = parse_args(argv)
    if MISSING is not None:
        print(f"{INSTALL_HINT}\n({MISSING})", file=sys.stderr)
        return 2
    if not args.directory.is_dir():
        print(f"{args.directory} is not a directory", file=sys.stderr)
        return 2
    if args.dask is not None and importlib.util.find_spec("distributed") is None:
        print("--dask needs Dask distributed: pip install 'trio_dag[dask]'", file=sys.stderr)
        return 2
    db_path = args.db or str(Path(tempfile.mkdtemp(prefix="embed_corpus-"), "corpus.sqlite3"))
    sources = find_sources(args.directory)
    total = sum(source.size for source in sources)
    print(f"corpus: {args.directory} ({len(sources):,} files, {total / 1e6:.1f} MB)", flush=True)

    cache_path = None if args.no_cache else (args.cache or default_cache())
    # Opened before the model is loaded: a file that is not a cache stops here.
    cache = None if cache_path is None else trio_dag.Cache(cache_path)
    # This process's model: the threads' (the default), and the query's.
    model = importable().local_model()
    db = open_db(db_path)
    try:
        with executors(args.workers, args.dask) as (run_in, on, where):
            print(f"model: {where}", flush=True)
            plan = pipeline(sources, model, db, args.batch, cache is not None, run_in)
            progress = Progress(plan)
            report = trio.run(
                functools.partial(
                    embed_all,
                    plan,
                    args,
                    limit=args.limit,
                    # No "model" resource: WordLlama's numpy releases the GIL, and two
                    # calls at once keep both cores busy (13.5 s against 19.1 s one at
                    # a time) in threads; processes are limited by --workers.
                    resources={"db": 1},
                    check=False,
                    on_event=progress,
                    cache=cache,
                    executors=on,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    progress.close()

    print(report.summary())
    makespan = report.stats.makespan
    embeds = embeds_of(report)
    ended = (TaskState.SUCCEEDED, TaskState.CACHED)
    chunks = sum(len(report[s][0]) for s in plan.splits if report.state(s) in ended)
    embedded = len(embeds) - len(set(embeds).intersection(report.cached))
    calls = batches(report, embeds)
    print(
        f"\n{chunks:,} chunks; embedded {embedded:,} of them, of {len(sources):,} files in "
        f"{makespan:.1f} s ({embedded / max(makespan, 1e-9):,.0f} chunks/s) in {calls:,} "
        f"model calls ({embedded / max(calls, 1):.1f} chunks per call)"
    )
    if cache_path is not None:
        print(cache_line(report, plan))
    report.to_chrome_trace(args.trace)
    print(f"database: {db_path}")
    print(f"cache: {cache_path if cache_path is not None else 'none (--no-cache)'}")
    print(f"trace: {args.trace}")

    print(f"\nthe {TOP} chunks nearest to {args.query!r}:")
    for hit in search(db, model, args.query):
        print(f"  {hit.score:.3f}  {hit.path}:{hit.line}  {first_line(hit.text)}")
    db.close()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
