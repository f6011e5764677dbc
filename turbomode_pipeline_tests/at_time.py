"""Run one of the product's commands with the clock set: `python -m turbomode_pipeline_tests.at_time ISO COMMAND ARGS...`.

COMMAND is `turbomode` or `dagster`. time-machine moves every clock the process reads (ours,
Dagster's, exchange_calendars', pandas') to ISO, then lets it tick, so the command lives
through that moment as it would on that day. Used by the tests, like faketime but from PyPI.
"""

import sys
from datetime import datetime

import time_machine


def main(argv: list[str]) -> int:
    when, command, *args = argv
    traveller = time_machine.travel(datetime.fromisoformat(when), tick=True)
    traveller.start()
    sys.argv = [command, *args]
    if command == "turbomode":
        from turbomode_pipeline.cli import main as turbomode

        return turbomode(args)
    if command == "dagster":
        from dagster._cli import main as dagster

        return dagster()
    raise SystemExit(f"at_time: unknown command {command!r}: expected turbomode or dagster")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
