"""The compiled part of the package (everything else is in pyproject.toml): the per-packet
core of the send-side bandwidth estimate, media/_gcc_core.pyx (Cython, built by ``pip install``;
gcc and the Python headers are on every machine the README's commands set up)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("media._gcc_core", ["media/_gcc_core.pyx"])],
        compiler_directives={"language_level": 3},
    )
)
