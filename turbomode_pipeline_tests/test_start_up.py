"""Every Dagster process (CLI call, launched run, step) imports the code location first: it must not
pay for the heavy libraries that only training, reports and drift use. Which modules load is
deterministic where a time is not, so the test names them."""

import json
import subprocess
import sys

HEAVY = ("mlflow", "sklearn", "scipy", "matplotlib", "xgboost")


def test_the_code_location_imports_no_heavy_library():
    code = (
        "import json, sys; import turbomode_pipeline.definitions; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == []
