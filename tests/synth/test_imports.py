"""synth imports nothing of ours: only the standard library, Pillow, NumPy and tqdm."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED = {"PIL", "numpy", "tqdm", "synth"}


def test_synth_imports_only_stdlib_pillow_numpy_tqdm() -> None:
    root = Path(__file__).resolve().parents[2] / "synth"
    bad: list[str] = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    bad.append(f"{path.name}: {name}")
    assert bad == []
