"""Code lines of Python files: docstrings, comments and blank lines left out (an AST count).

python scripts/code_lines.py supernet/search/*.py
"""

from __future__ import annotations

import ast
import sys


def code_lines(path: str) -> int:
    source = open(path).read()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


if __name__ == "__main__":
    total = 0
    for path in sys.argv[1:]:
        count = code_lines(path)
        total += count
        print(f"{count:6d} {path}")
    print(f"{total:6d} total")
