"""One home for each idea (issue 15): rules about where things live, checked on the package source."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "turbomode_pipeline"

# Upper-case SQL keywords in the shapes a statement takes; prose in a docstring rarely shouts them.
SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bCREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?(TABLE|VIEW)\b"
    r"|\bDELETE\s+FROM\b|\bUPDATE\s+\w+\s+SET\b|\bWITH\s+\w+\s+AS\s*\("
)


def _text(node: ast.AST) -> str | None:
    """The text of a string constant, or of an f-string with each placeholder as `?`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "?" for part in node.values)
    return None


def sql_strings(tree: ast.AST) -> list[int]:
    """Lines of the string constants and f-strings that look like SQL."""
    parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    return sorted(
        node.lineno for node in ast.walk(tree)
        if id(node) not in parts and (text := _text(node)) is not None and SQL.search(text)
    )


def test_sql_lives_only_under_resources():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "resources"
        for line in sql_strings(ast.parse(path.read_text(), str(path)))
    ]
    assert found == [], "SQL outside resources/ (give the query a named method on a resource): " + ", ".join(found)


def test_the_sql_check_finds_each_shape():
    source = '\n'.join([
        'a = "SELECT x FROM t"',
        'b = f"SELECT {cols} FROM t WHERE s = ?"',
        'c = "INSERT INTO t VALUES (1)"',
        'd = "CREATE TABLE IF NOT EXISTS t (x INT)"',
        'e = "DELETE FROM t"',
        'f = "UPDATE t SET x = 1"',
        'g = "WITH recent AS (SELECT 1) SELECT * FROM recent"',
        'h = "select the sessions from the calendar, then update the table"',
    ])
    assert sql_strings(ast.parse(source)) == [1, 2, 3, 4, 5, 6, 7]


def dagster_imports(tree: ast.AST) -> list[int]:
    """Lines that import dagster or one of its modules."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0].startswith("dagster") for a in node.names):
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0].startswith("dagster"):
            lines.append(node.lineno)
    return sorted(lines)


def test_core_imports_no_dagster():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted((PACKAGE / "core").rglob("*.py"))
        for line in dagster_imports(ast.parse(path.read_text(), str(path)))
    ]
    assert found == [], "core/ is pure computation; Dagster belongs in assets/, automation/ or resources/: " + ", ".join(found)


def test_the_dagster_check_finds_each_form():
    source = "import dagster\nfrom dagster import asset\nimport dagster_dask\nfrom dagster._core import x\nimport polars\n"
    assert dagster_imports(ast.parse(source)) == [1, 2, 3, 4]
