"""The code's shape (issue #27): no import circle between modules, no module
over 300 lines, no function over 60, no C file over 500."""

import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.join(ROOT, "bpftrace_leak")


def modules() -> dict[str, str]:
    out = {}
    for path in glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[rel[:-9] if rel.endswith(".__init__") else rel] = path
    return out


def imports(name: str, path: str, known) -> set[str]:
    """The package's modules ``name`` imports, at the top or in a function."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                for cand in (f"{base}.{alias.name}", base):
                    if cand in known:
                        found.add(cand)
                        break
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    found.discard(name)
    return found


def test_no_import_circle():
    mods = modules()
    graph = {m: imports(m, p, mods) for m, p in mods.items()}
    # a package's __init__ importing its own modules is not a circle of theirs
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".") or d not in mods or
                    not mods[d].endswith("__init__.py")}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d] if d in path else path + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_sizes():
    long_modules = {m: n for m, p in modules().items() if (n := len(open(p).read().splitlines())) > 300}
    assert not long_modules, long_modules
    long_functions = []
    for path in modules().values():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append((os.path.relpath(path, ROOT), node.name, node.end_lineno - node.lineno + 1))
    assert not long_functions, long_functions
    c_files = glob.glob(os.path.join(PKG, "*.c")) + glob.glob(os.path.join(PKG, "**", "*.h"), recursive=True)
    long_c = {os.path.relpath(p, ROOT): n for p in c_files if (n := len(open(p).read().splitlines())) > 500}
    assert not long_c, long_c
