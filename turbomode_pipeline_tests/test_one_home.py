"""One home for each idea (issue 15): rules about where things live, checked on the package source."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "turbomode_pipeline"
# settings.py reads the environment for every module; instance_storage.py turns on Dagster's event
# batching (DAGSTER_EVENT_BATCH_SIZE) for the storage it builds, a documented exception.
ENVIRONMENT_READERS = {"settings.py", "instance_storage.py"}


def environment_uses(tree: ast.AST) -> list[int]:
    """Lines of `os.environ`, `os.getenv`, `os.putenv` and of `from os import environ/getenv/putenv`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "environb"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if {alias.name for alias in node.names} & {"environ", "getenv", "putenv", "environb"}:
                lines.append(node.lineno)
    return sorted(lines)


def test_the_environment_is_read_only_in_settings():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if str(path.relative_to(PACKAGE)) not in ENVIRONMENT_READERS
        for line in environment_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert found == [], "the environment is read outside settings.py (read it there, pass the value in): " + ", ".join(found)


def test_the_check_finds_a_read():
    source = "import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\n"
    assert environment_uses(ast.parse(source)) == [2, 3, 4]
