"""Build the compiled kernels. Metadata lives in pyproject.toml.

Compiler directives are set here, in one place. CYLSTM_DEBUG=1 turns bounds
and wraparound checks back on and compiles without optimisation, for
debugging a kernel (as scikit-learn's SKLEARN_ENABLE_DEBUG_CYTHON_DIRECTIVES).
CYLSTM_ANNOTATE=1 writes `cython -a` HTML next to each .pyx.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

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
# at run time (target_clones in cylstm/_gates.h). -fno-trapping-math lets GCC
# vectorise its selects as compare and blend (we never read floating-point
# exception flags); without it the gate loops stay scalar.
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-trapping-math"]
if os.name == "nt":
    compile_args = ["/O2"]

extensions = [
    Extension(
        "cylstm._lstm",
        sources=["cylstm/_lstm.pyx"],
        include_dirs=["cylstm"],
        extra_compile_args=compile_args,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=ANNOTATE,  # an up-to-date .c would otherwise skip writing the HTML
    ),
)
