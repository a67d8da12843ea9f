"""The package's shape: imports point down only, and the formats never know the model.

The import graph is read from the installed package's source with `ast`, function-level
imports included, so that an import hidden in a method cannot close a circle.
"""

import ast
import os

import cylstm

PACKAGE_DIR = os.path.dirname(cylstm.__file__)
FORMAT_MODULES = ("files", "torch_io", "onnx_io", "onnx_export", "keras_io")


def _modules():
    """{module name relative to the package ('' for __init__): source path}."""
    modules = {}
    for root, _, names in os.walk(PACKAGE_DIR):
        for name in names:
            if name.endswith((".so", ".pyd")) and root == PACKAGE_DIR:  # a compiled leaf
                modules[name.split(".")[0]] = None
            elif name.endswith(".py"):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, PACKAGE_DIR)[:-3].replace(os.sep, ".")
                modules["" if relative == "__init__" else relative.removesuffix(".__init__")] = path
    return modules


def _imports(path, module, modules):
    """The package modules that `module` imports anywhere in its source."""
    package = module.rsplit(".", 1)[0] if "." in module else ""
    if os.path.basename(path) == "__init__.py":
        package = module
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "cylstm" or node.module.startswith("cylstm.")):
                target = node.module.removeprefix("cylstm").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{target}.{alias.name}".lstrip(".")
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "cylstm" or alias.name.startswith("cylstm."):
                    found.add(alias.name.removeprefix("cylstm").lstrip("."))
    return {name for name in found if name in modules and name != module}


def _graph():
    modules = _modules()
    return {module: set() if path is None else _imports(path, module, modules)
            for module, path in modules.items()}


def _find_cycle(graph):
    """A list of modules that import each other in a circle, or None."""
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return trail[trail.index(target):] + [target]
            if target not in state:
                cycle = visit(target, trail + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = _graph()
    assert {"model", "_walk", "_params", "training", "stream"} <= set(graph)
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(name or "cylstm" for name in cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_formats_translate_to_config_and_state_dict_without_the_model():
    graph = _graph()
    for module in FORMAT_MODULES:
        assert "model" not in graph[module] and "" not in graph[module], (module, graph[module])


def test_the_walk_serves_every_face():
    graph = _graph()
    for face in ("model", "training", "stream"):
        assert "_walk" in graph[face], face
