"""The Examples sections of the public docstrings run, as doctests, against the installed package.

One test per module. A docstring whose examples import torch, onnx, onnxruntime or keras runs
only where that framework is installed (the framework-free wheel runs leave it out, the CI test
job has them all); every module keeps at least one example that needs nothing but NumPy.
"""

import doctest
import importlib
import importlib.util
import os
import re

import pytest

MODULES = ("cylstm.model", "cylstm.cell", "cylstm.functional", "cylstm.saving", "cylstm.stream",
           "cylstm.training", "cylstm.optim", "cylstm.files", "cylstm.torch_io",
           "cylstm.onnx_io", "cylstm.onnx_export", "cylstm.keras_io", "cylstm.plans")
FRAMEWORKS = ("torch", "onnx", "onnxruntime", "keras")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
IMPORT = re.compile(r"^\s*(?:import|from)\s+(\w+)", re.MULTILINE)


def _needed_frameworks(test):
    """The frameworks that a docstring's examples import, or that the ONNX helpers need."""
    source = "".join(example.source for example in test.examples)
    needed = {name for name in IMPORT.findall(source) if name in FRAMEWORKS}
    if re.search(r"\.(to|from)_onnx\(|onnx_from_parts\(|parts_from_onnx\(", source):
        needed.add("onnx")
    if re.search(r"\.to_torch\(|torch_from_parts\(", source):
        needed.add("torch")
    return needed


def _installed(name):
    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    # Keras on its lightest backend here (as tests/test_keras.py); an explicit choice wins.
    os.environ.setdefault("KERAS_BACKEND", "torch")
    module = importlib.import_module(name)
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    runnable = [test for test in tests
                if all(_installed(framework) for framework in _needed_frameworks(test))]
    # Reading ONNX needs onnx by its nature; every other module shows NumPy-only use.
    assert name == "cylstm.onnx_io" or any(not _needed_frameworks(test) for test in tests), \
        f"{name} has no example that runs without a framework"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failures = []
    for test in runnable:
        runner.run(test, out=failures.append)
    assert not failures, "\n".join(failures)
