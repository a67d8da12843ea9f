"""Build the compiled kernels. Metadata lives in pyproject.toml.

Compiler directives and flags are set here, in one place. CYLSTM_DEBUG=1 turns
bounds and wraparound checks back on and compiles without optimisation, for
debugging a kernel (as scikit-learn's SKLEARN_ENABLE_DEBUG_CYTHON_DIRECTIVES).
CYLSTM_ANNOTATE=1 writes `cython -a` HTML next to each .pyx.
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("CYLSTM_DEBUG", "0") == "1"
ANNOTATE = os.environ.get("CYLSTM_ANNOTATE", "0") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# Portable machine code: no -march=native. The gate math picks its SIMD width
# at run time (a copy per instruction set in cylstm/_gates.h). -fno-trapping-math lets GCC
# vectorise its selects as compare and blend (we never read floating-point
# exception flags); without it the gate loops stay scalar. -g0 overrides the
# -g in Python's own CFLAGS: debug info made the .so 3.5 MB instead of 0.75.
if os.name == "nt":
    compile_args, link_args = ["/O2"], []
elif DEBUG:
    compile_args, link_args = ["-O0", "-g"], []
else:
    compile_args = ["-O3", "-fno-trapping-math", "-g0"]
    # GNU ld: drop the symbol table too (macOS's linker has no -s).
    link_args = ["-Wl,-s"] if sys.platform.startswith("linux") else []


class BuildExtWithoutRpath(build_ext):
    """Link without the -rpath that some Pythons (pyenv's) put in LDSHARED.

    The extension needs nothing beyond libc and the interpreter, and a RUNPATH
    would point every installed copy at the build host's Python.
    """

    def build_extensions(self):
        linker = getattr(self.compiler, "linker_so", None)
        if linker:
            self.compiler.linker_so = [
                arg for arg in linker if not arg.startswith(("-Wl,-rpath", "-Wl,-R"))]
        super().build_extensions()


extensions = [
    Extension(
        "cylstm._lstm",
        sources=["cylstm/_lstm.pyx"],
        include_dirs=["cylstm"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]

setup(
    cmdclass={"build_ext": BuildExtWithoutRpath},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=ANNOTATE,  # an up-to-date .c would otherwise skip writing the HTML
    ),
)
