"""The house rules for the product code: no module over 400 lines, no function over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import fluxrate

PRODUCT = Path(fluxrate.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def product_modules() -> list[Path]:
    return sorted(PRODUCT.rglob("*.py"))


def oversized() -> list[str]:
    offenders = []
    for path in product_modules():
        source = path.read_text()
        name = path.relative_to(PRODUCT.parent)
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            offenders.append(f"{name}: module of {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{name}:{node.lineno}: {node.name}() of {length} lines")
    return offenders


def test_product_code_is_walked() -> None:
    names = {path.relative_to(PRODUCT).as_posix() for path in product_modules()}
    assert {"payments.py", "operator/handlers.py", "webhook_receiver/processing.py"} <= names


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    offenders = oversized()
    assert not offenders, "over the house limits:\n" + "\n".join(offenders)
