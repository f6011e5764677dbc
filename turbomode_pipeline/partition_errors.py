"""One line instead of a 50-line traceback when a `dagster` command is given a date that is no NYSE session.

`dagster asset materialize --partition 2026-11-28` raises DagsterInvalidSubsetError out of the CLI
(Dagster does not catch it); a hook on uncaught exceptions, installed when the package loads,
answers that one case with the nearest sessions and exit code 2, and hands everything else on.
"""

import re
import sys
from datetime import date

KEY = re.compile(r"partition (?:with )?key `(\d{4}-\d\d-\d\d)`")


def non_session_key(error: BaseException) -> date | None:
    """The date a partition-key error of Dagster's complains about, when it is no NYSE session."""
    chain = [error, error.__context__, error.__cause__]
    for link in chain:
        if link is None or type(link).__name__ not in ("DagsterInvalidSubsetError", "DagsterUnknownPartitionError"):
            continue
        found = KEY.search(str(link))
        if found:
            from turbomode_pipeline.calendar import is_session

            day = date.fromisoformat(found.group(1))
            return None if is_session(day) else day
    return None


def install() -> None:
    previous = sys.excepthook

    def hook(kind, error, trace):
        day = non_session_key(error) if isinstance(error, Exception) else None
        if day is None:
            return previous(kind, error, trace)
        from turbomode_pipeline.calendar import not_a_session

        print(f"dagster: --partition {not_a_session(day)}", file=sys.stderr)
        sys.exit(2)

    sys.excepthook = hook
