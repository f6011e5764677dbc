"""Checks evaluated on a frame before it is written: a schema and a list of rules.

The asset yields one AssetCheckResult per check and refuses to write when a blocking one
fails, so the warehouse keeps its last good data and everything downstream stops.
"""

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, Failure, MetadataValue
from pandera.errors import SchemaErrors

from turbomode_pipeline.core.rules import Rule, describe, describe_schema_failures
from turbomode_pipeline.schemas import conform


def check_specs(asset: str, schema_check: str, rules: tuple[Rule, ...]) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(schema_check, asset=asset, blocking=True, description=f"columns, types and nulls of {asset}"),
        *(AssetCheckSpec(r.name, asset=asset, blocking=r.blocking, description=r.description) for r in rules),
    ]


class CheckFailures(list):
    """The messages of the failed blocking checks, and the sessions they name (`sessions`; None
    when a finding is not a session's, such as a schema failure: then the whole batch failed)."""

    def __init__(self, messages=(), sessions: dict | None = None):
        super().__init__(messages)
        self.sessions = sessions  # session -> the names of the rules it failed


def evaluate(
    frame: pl.DataFrame, schema, schema_check: str, rules: tuple[Rule, ...], rule_frame: pl.DataFrame | None = None,
    **context,
):
    """Yield a result per check; return `frame` as the schema validated it (coerced, columns in the schema's
    order, ready to write; None when the schema check failed) and the messages of the failed blocking checks.

    The rules see `rule_frame` when given: `frame` with helper columns the schema forbids.
    """
    try:
        validated = conform(frame, schema)
    except SchemaErrors as errors:
        message = f"{schema_check} failed, {describe_schema_failures(frame, errors.failure_cases)}"
        yield AssetCheckResult(check_name=schema_check, passed=False, description=message)
        for rule in rules:
            yield AssetCheckResult(check_name=rule.name, passed=False, description="not evaluated: schema check failed")
        return None, CheckFailures([message], None)
    yield AssetCheckResult(check_name=schema_check, passed=True)
    failures = CheckFailures(sessions={})
    for rule in rules:
        found = rule.find(frame if rule_frame is None else rule_frame, **context)
        message = describe(rule, found)
        yield AssetCheckResult(
            check_name=rule.name,
            passed=found.is_empty(),
            severity=AssetCheckSeverity.ERROR if rule.blocking else AssetCheckSeverity.WARN,
            description=message,
            metadata={
                "violations": found.height,
                "first_violations": MetadataValue.json(
                    found.head(20).with_columns(pl.col("session").cast(pl.String)).to_dicts()
                ),
            },
        )
        if rule.blocking and not found.is_empty():
            failures.append(message)
            if failures.sessions is not None and "session" in found.columns and found["session"].null_count() == 0:
                for session in found["session"].unique().to_list():
                    failures.sessions.setdefault(session, []).append(rule.name)
            else:
                failures.sessions = None
    return validated, failures


def refuse(asset: str, failures: list[str], sessions: list) -> Failure:
    """The error that stops a run whose data failed a blocking check."""
    return Failure(
        description=f"{asset} not written: " + " | ".join(failures),
        metadata={"sessions": f"{sessions[0]}..{sessions[-1]}", "failed_checks": len(failures)},
    )
