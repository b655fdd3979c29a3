"""Plan a small build pipeline as a DAG and print the waves it would run in.

Nothing runs here: the graph is built, validated, and its waves printed by
name. Wave k holds the tasks whose longest chain of dependencies has k links,
so every task of a wave can run at the same time once the waves before it
are done. ``--dot`` or ``--mermaid`` prints the graph instead.

    python examples/waves.py [--dot | --mermaid]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio_dag

MODULES = ["parser", "lexer", "codegen", "runtime"]


async def fetch_toolchain(version: str) -> Path:
    return Path(f"/opt/toolchain-{version}")


async def generate_grammar(toolchain: Path) -> str:
    return "grammar.c"


async def compile_module(name: str, toolchain: Path, extra: list[str]) -> Path:
    return Path(f"build/{name}.o")


async def link(objects: list[Path], toolchain: Path) -> Path:
    return Path("build/app")


async def run_tests(binary: Path, suite: str) -> bool:
    return True


async def package(binary: Path, docs: Path) -> Path:
    return Path("dist/app.tar.gz")


async def build_docs() -> Path:
    return Path("build/docs")


async def clean_scratch() -> None:
    return None


def pipeline() -> trio_dag.DAG:
    """The build: a toolchain, four modules (one needs a generated grammar),
    a link, tests, docs, a package, and a clean-up that runs whatever happens."""
    dag = trio_dag.DAG()
    toolchain = dag.add(fetch_toolchain, "13.2", name="toolchain", tags=("net",), retries=3)
    grammar = dag.add(generate_grammar, toolchain, name="grammar")
    objects = [
        dag.add(
            compile_module,
            module,
            toolchain,
            [grammar] if module == "parser" else [],
            name=f"compile-{module}",
            tags=("cpu",),
            cost=4.0,
        )
        for module in MODULES
    ]
    binary = dag.add(link, objects, toolchain, name="link")
    suites = [dag.add(run_tests, binary, suite, name=f"test-{suite}") for suite in ("unit", "e2e")]
    # "docs" is added below: after= may name a task that does not exist yet,
    # names are resolved when the DAG is validated.
    dag.add(package, binary, Path("build/docs"), name="package", after=[*suites, "docs"])
    dag.add(build_docs, name="docs")
    dag.add(clean_scratch, name="clean", after=["package"], trigger="all_done")
    return dag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dot", action="store_true", help="print Graphviz DOT")
    group.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart")
    args = parser.parse_args()

    dag = pipeline()
    dag.validate()
    if args.dot:
        print(dag.to_dot(), end="")
        return
    if args.mermaid:
        print(dag.to_mermaid(), end="")
        return
    waves = dag.waves()
    print(f"{len(dag)} tasks in {len(waves)} waves:")
    for k, wave in enumerate(waves):
        print(f"  wave {k}: {', '.join(h.name for h in wave)}")
    print(f"packaging waits for: {', '.join(h.name for h in dag.dependencies(dag['package']))}")


if __name__ == "__main__":
    main()
