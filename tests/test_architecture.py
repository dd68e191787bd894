"""ARCHITECTURE.md's import rules, checked on the code: which package may import which at
module level, and that the heavy runtimes load only inside the functions that need them."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mobile_kernelnet", "export", "bench", "android_harness")
MAY_IMPORT = {
    "mobile_kernelnet": set(),
    "export": {"mobile_kernelnet"},
    "bench": {"mobile_kernelnet", "export"},
    "android_harness": {"bench.records", "export.manifest", "export.parity", "export.runtimes", "export.formats"},
}
"""Package -> the other packages (or modules of them) it may import at module level."""
HEAVY = ("onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "ai_edge_litert", "ray", "pyarrow", "pandas")


def module_level_imports(path: Path) -> list[str]:
    """Dotted names imported by statements that run when ``path`` is imported (not inside
    functions; ``if TYPE_CHECKING:`` blocks excluded)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = []

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                names.append(base)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)
    visit(ast.parse(path.read_text()).body)
    return names


CLI = REPO / "mobile_kernelnet" / "cli.py"
"""The top layer: it may import every package (and reads the format table at import)."""


def files_of(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if p != CLI)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package):
    wrong = []
    for path in files_of(package):
        for name in module_level_imports(path):
            top = name.split(".")[0]
            if top in PACKAGES and top != package and not any(
                    name == allowed or name.startswith(allowed + ".") or allowed == top
                    for allowed in MAY_IMPORT[package]):
                wrong.append(f"{path.relative_to(REPO)}: {name}")
    assert not wrong, wrong


@pytest.mark.parametrize("package", PACKAGES)
def test_heavy_runtimes_load_only_where_used(package):
    heavy = [f"{p.relative_to(REPO)}: {n}" for p in files_of(package) for n in module_level_imports(p)
             if n.split(".")[0] in HEAVY]
    assert not heavy, heavy


def test_the_walk_sees_module_level_imports_and_skips_function_bodies(tmp_path, monkeypatch):
    pkg = tmp_path / "export"
    pkg.mkdir()
    (pkg / "m.py").write_text("import os\nfrom .formats import X\nif True:\n    import bench.report\n"
                              "def f():\n    import tensorflow\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    assert module_level_imports(pkg / "m.py") == ["os", "export.formats", "bench.report"]
