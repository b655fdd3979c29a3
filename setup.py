"""Builds the compiled core, loop, interner, builder and cache key hasher.

Unless TRIO_DAG_NO_EXTENSIONS is set.
"""

import os

from setuptools import Extension, setup

if os.environ.get("TRIO_DAG_NO_EXTENSIONS"):
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            Extension(
                f"trio_dag._native.{name}",
                [f"trio_dag/_native/{name}.pyx"],
                extra_compile_args=["-O3"],
            )
            for name in ("_core", "_loop", "_intern", "_build", "_keyhash", "_sqlwriter")
        ],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
