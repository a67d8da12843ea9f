"""The installed package carries its types: py.typed, and a stub that matches the extension.

The stub (cylstm/_lstm.pyi) is read with `ast` and compared with the compiled module: the same
public names, and per function the same positional and keyword-only parameters in the same
order (read off the code object of a Cython function, or of one specialisation of a fused one).
"""

import ast
import os

import cylstm
from cylstm import _lstm

PACKAGE_DIR = os.path.dirname(cylstm.__file__)
# Names the extension imports for its own use; they are not entry points.
IMPORTED = {"np", "ALIGNMENT", "aligned_copy"}


def _stub():
    with open(os.path.join(PACKAGE_DIR, "_lstm.pyi"), encoding="utf-8") as file:
        return ast.parse(file.read())


def _parameters(function):
    """(positional names, keyword-only names) of a compiled function."""
    if hasattr(function, "__signatures__"):  # fused: each specialisation has the same names
        function = function[next(iter(function.__signatures__))]
    code = function.__code__
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    return list(names[:code.co_argcount]), list(names[code.co_argcount:])


def test_py_typed_and_stub_are_installed():
    assert os.path.isfile(os.path.join(PACKAGE_DIR, "py.typed"))
    assert os.path.isfile(os.path.join(PACKAGE_DIR, "_lstm.pyi"))


def test_stub_names_the_extension_entry_points():
    stub = _stub()
    functions = {node.name for node in stub.body if isinstance(node, ast.FunctionDef)}
    classes = {node.name for node in stub.body if isinstance(node, ast.ClassDef)}
    constants = {node.target.id for node in stub.body if isinstance(node, ast.AnnAssign)}
    public = {name for name in vars(_lstm) if not name.startswith("_")} - IMPORTED
    assert functions | classes | constants == public
    assert classes == {name for name in public if isinstance(getattr(_lstm, name), type)}
    assert functions == {name for name in public if callable(getattr(_lstm, name))} - classes
    assert constants == {"COLUMN_LAYOUT_MIN_BATCH", "STRATEGIES", "SIMD_PATHS",
                         "SIMD_ENVIRONMENT_VARIABLE"}
    assert isinstance(_lstm.COLUMN_LAYOUT_MIN_BATCH, int)


def test_stub_parameters_match_the_extension():
    for node in _stub().body:
        if isinstance(node, ast.FunctionDef):
            stubbed = ([arg.arg for arg in node.args.args],
                       [arg.arg for arg in node.args.kwonlyargs])
            assert stubbed == _parameters(getattr(_lstm, node.name)), node.name
    assert _parameters(_lstm.forward_layer)[1][-1] == "_gate_math"  # keyword-only, private
