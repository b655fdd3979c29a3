"""Builds the compiled core, unless TRIO_DAG_NO_EXTENSIONS is set."""

import os

from setuptools import Extension, setup

if os.environ.get("TRIO_DAG_NO_EXTENSIONS"):
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("trio_dag._core", ["trio_dag/_core.pyx"], extra_compile_args=["-O3"])],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
