"""Builds the compiled core, loop and interner, unless TRIO_DAG_NO_EXTENSIONS is set."""

import os

from setuptools import Extension, setup

if os.environ.get("TRIO_DAG_NO_EXTENSIONS"):
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            Extension(name, [f"trio_dag/{name.split('.')[1]}.pyx"], extra_compile_args=["-O3"])
            for name in ("trio_dag._core", "trio_dag._loop", "trio_dag._intern")
        ],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
