"""The map of the package (docs/architecture.md) holds: the book imports neither the engine nor
anything that touches files, and no two modules import each other round in a circle.

The imports are read from the installed package's source with ``ast`` (every ``import`` and
``from ... import``, at module level or inside functions), so the test sees what the code says, not
what happened to be imported at run time.
"""

import ast

from package_map import MODULES, source_of

BOOK = {"pydeberta.functional", "pydeberta.losses", "pydeberta.positions", "pydeberta.attention",
        "pydeberta.conv", "pydeberta.model", "pydeberta.heads", "pydeberta.dropout", "pydeberta.quantization"}
# Modules through which a file could be read or written, from the package or the standard library.
FILE_IO = {"pydeberta.checkpoint", "pydeberta.torch_pickle", "pydeberta.hub", "pydeberta.tokenizer",
           "os", "io", "pathlib", "json", "pickle", "zipfile", "shutil", "tempfile", "safetensors",
           "sentencepiece"}


def imports_of(name):
    """The absolute names ``name`` imports (``from . import x`` resolved against its package)."""
    is_package = source_of(name).name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source_of(name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = {f"{target}.{alias.name}" for alias in node.names} & MODULES  # `from . import attention`
            found.update(submodules or {target})
    return found


def internal_graph():
    """``{module: {package modules it imports}}``."""
    return {name: {other for other in imports_of(name) if other in MODULES and other != name} for name in MODULES}


def test_the_map_lists_the_modules_the_package_has():
    names = MODULES
    assert BOOK <= names
    assert {"pydeberta.modeling", "pydeberta.hub", "pydeberta.checkpoint", "pydeberta.torch_pickle",
            "pydeberta.engine.backend", "pydeberta.engine.model", "pydeberta.engine.kernels",
            "pydeberta.engine.relative"} <= names


def test_the_book_imports_neither_the_engine_nor_files():
    for name in sorted(BOOK):
        imported = imports_of(name)
        engine = sorted(other for other in imported if other.startswith("pydeberta.engine"))
        files = sorted(other for other in imported if other.split(".")[0] in FILE_IO or other in FILE_IO)
        assert not engine, f"{name} (the book) imports the engine: {engine}"
        assert not files, f"{name} (the book) imports file I/O: {files}"
        product = sorted(other for other in imported if other.startswith("pydeberta.")
                         and other not in BOOK and other.rsplit(".", 1)[0] not in BOOK)
        assert not product, f"{name} (the book) imports the product layer: {product}"


def test_the_engine_imports_only_the_book():
    """The engine may import the book (to reuse it or fall back to it), never a product module:
    every package module outside the engine and the book counts as the product."""
    for name, imported in internal_graph().items():
        if name.startswith("pydeberta.engine"):
            product = sorted(other for other in imported if not other.startswith("pydeberta.engine") and other not in BOOK)
            assert not product, f"{name} (the engine) imports {product}"


def test_no_import_cycle():
    graph = internal_graph()
    # `pydeberta` (the package) re-exports the public names, and a submodule's import of the
    # package's own __init__ is what Python does anyway; only submodule-to-submodule edges count.
    graph = {name: {other for other in edges if other != "pydeberta"} for name, edges in graph.items()}
    state, path = {}, []

    def visit(node):
        state[node] = "active"
        path.append(node)
        for other in sorted(graph.get(node, ())):
            if other.startswith(node + "."):  # a package importing its own submodule is no cycle
                continue
            if state.get(other) == "active":
                cycle = path[path.index(other):] + [other]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
