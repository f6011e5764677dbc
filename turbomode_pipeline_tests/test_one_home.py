"""One home for each idea (issue 15): rules about where things live, checked on the package source."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "turbomode_pipeline"
# settings.py reads the environment for every module (Dagster's event batching switch is set in the
# processes' environment: the Makefile, deploy/turbomode.env.example, conftest).
ENVIRONMENT_READERS = {"settings.py"}


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


# A code location loaded with these: each value must reach its consumer (resource, run config default or
# partition mapping) through the one Settings object.
EXPORTED = {
    "TURBOMODE_LABEL_HORIZON": "7", "TURBOMODE_LABEL_K_UP": "1.5", "TURBOMODE_LABEL_TARGET": "absolute",
    "TURBOMODE_SIGNAL_THRESHOLD": "0.7", "TURBOMODE_MIN_COVERAGE": "0.9", "TURBOMODE_KILL_SWITCH": "1",
    "TURBOMODE_RISK_MAX_OPEN_POSITIONS": "3", "TURBOMODE_DRIFT_WINDOW_SESSIONS": "30",
    "TURBOMODE_BACKTEST_QUANTILES": "4", "TURBOMODE_CHAMPION_MIN_RANK_IC_T": "1.5",
}
REPORT = """
import json
from turbomode_pipeline.assets.drift import DriftConfig
from turbomode_pipeline.assets.features import training_samples
from turbomode_pipeline.assets.market_data import BarsConfig
from turbomode_pipeline.assets.models import TrainingConfig
from turbomode_pipeline.assets.scanner import ScannerConfig
from turbomode_pipeline.assets.signal_backtest import SignalBacktestConfig
from turbomode_pipeline.definitions import defs

labels, live = defs.resources["labels"], defs.resources["live_trading"]
mapping = training_samples.get_partition_mapping(next(k for k in training_samples.dependency_keys if k.path == ["daily_bars"]))
print(json.dumps({
    "labels": [labels.horizon, labels.k_up, labels.target], "mapping_end_offset": mapping.end_offset,
    "threshold": ScannerConfig().threshold, "min_coverage": BarsConfig().min_coverage,
    "kill_switch": live.kill_switch, "max_open_positions": live.limits().max_open_positions,
    "drift_window": DriftConfig().window_sessions, "quantiles": SignalBacktestConfig().quantiles,
    "gate": TrainingConfig().champion_min_rank_ic_t,
}))
"""


def test_each_exported_setting_reaches_its_consumer(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURBOMODE_", "DAGSTER_"))}
    env |= EXPORTED | {"TURBOMODE_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "labels": [7, 1.5, "absolute"], "mapping_end_offset": 7, "threshold": 0.7, "min_coverage": 0.9,
        "kill_switch": True, "max_open_positions": 3, "drift_window": 30, "quantiles": 4, "gate": 1.5,
    }


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
