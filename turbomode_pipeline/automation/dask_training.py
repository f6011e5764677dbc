"""The training job's dask executor: dagster-dask's, with the step's arguments packed so dask does not walk them.

dagster-dask (0.29) hands `client.submit` the run, the run config and the plan's known state as plain arguments,
and dask walks every tuple among them looking for futures. A run of a time-partitioned job (sector_models is
partitioned by training week) carries its partitions subset, whose partitions definition is a Dagster `@record`
that refuses iteration ("Iteration is not allowed on `@record` TimeWindowPartitionsDefinition"), so every such
run failed before its first step. Packed in an object dask treats as opaque, the same arguments reach the same
worker function (`query_on_dask_worker`) unchanged. Only the `existing` cluster is supported: ours.
"""

from __future__ import annotations

import dask.distributed
from dagster import DagsterEvent, executor
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.errors import raise_execution_interrupts
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils import iterate_with_context
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker


class _Opaque:
    """Arguments dask passes through without looking inside (it walks lists, tuples, sets and dicts only)."""

    def __init__(self, *args):
        self.args = args


def _run_steps(dependencies, packed: _Opaque) -> list[DagsterEvent]:
    """On the worker: dagster-dask's own step runner with the unpacked arguments (`dependencies` only orders)."""
    return list(query_on_dask_worker(dependencies, *packed.args))


class PackedArgumentsDaskExecutor(DaskExecutor):
    """dagster-dask's executor on an existing cluster, submitting each step with its arguments packed."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan):
        instance = plan_context.instance
        with dask.distributed.Client(self.cluster_configuration["address"]) as client:
            futures_by_step = {}
            for step_level in execution_plan.get_steps_to_execute_by_level():
                for step in step_level:
                    dependencies = [futures_by_step[key] for step_input in step.step_inputs
                                    for key in step_input.dependency_keys]
                    packed = _Opaque(plan_context.reconstructable_job, plan_context.dagster_run,
                                     plan_context.run_config, [step.key], instance.get_ref(), execution_plan.known_state)
                    futures_by_step[step.key] = client.submit(
                        _run_steps, dependencies, packed, key=f"{plan_context.job_name}.{step.key}",
                        resources=get_dask_resource_requirements(step.tags),
                    )
            finished = dask.distributed.as_completed(list(futures_by_step.values()), with_results=True)
            for _, events in iterate_with_context(raise_execution_interrupts, finished):
                yield from events


def dask_training_executor(address: str):
    """The executor definition for a dask scheduler at `address` (TURBOMODE_DASK_SCHEDULER)."""

    @executor(name="dask", requirements=multiple_process_executor_requirements())
    def dask_existing_cluster(_init_context):
        return PackedArgumentsDaskExecutor("existing", {"address": address})

    return dask_existing_cluster
