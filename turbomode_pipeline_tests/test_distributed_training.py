"""Training on a real dask cluster on loopback, as dagster_home_distributed/dagster.yaml configures it:
a dask scheduler and two workers, PostgreSQL instance storage and an MLflow tracking server over
HTTP, all started and stopped here. One worker is killed in the middle of a sector's step."""

import json
import os
import re
import shutil
import signal

import pytest
from mlflow import MlflowClient

from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.partitions import SECTOR_PARTITIONS
from turbomode_pipeline_tests.support import FAST_TRAINING
from turbomode_pipeline_tests.servers import (
    BIN, LOCATION, REPO, PostgresServer, Server, free_port, instance_home, mlflow_server, server_env, wait_until,
)

SECTORS = SECTOR_PARTITIONS.get_partition_keys()[:4]  # 4 of the 11: the CI budget; 24 models
STEP_LINE = re.compile(r"(train_\w+) on \S+ pid (\d+)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, trained_models):
    """PostgreSQL, MLflow over HTTP, a dask scheduler and workers `w1`, `w2`: the environment they share."""
    root = tmp_path_factory.mktemp("distributed")
    (root / "data").mkdir()
    shutil.copy(trained_models.warehouse_path, root / "data" / "warehouse.duckdb")
    postgres = PostgresServer()
    servers = []
    try:
        mlflow_, url = mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts", root)
        servers.append(mlflow_)
        scheduler = f"tcp://127.0.0.1:{free_port()}"
        env = server_env(
            root, instance_home(root, REPO / "dagster_home_distributed" / "dagster.yaml"), trained_models.universe_path,
            TURBOMODE_DAGSTER_PG_URL=postgres.sqlalchemy_url, TURBOMODE_DASK_SCHEDULER=scheduler,
            MLFLOW_TRACKING_URI=url, TURBOMODE_MLFLOW_ARTIFACTS="mlflow-artifacts:/turbomode",
        )
        port = scheduler.rsplit(":", 1)[1]
        servers.append(Server("scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", port,
                                            "--no-dashboard"], env, root))
        workers = {
            name: Server(name, [str(BIN / "dask"), "worker", scheduler, "--name", name, "--nthreads", "1",
                                "--no-nanny", "--no-dashboard"], env, root)
            for name in ("w1", "w2")
        }
        servers += workers.values()
        yield {"root": root, "env": env, "workers": workers, "tracking_uri": url}
    finally:
        for server in reversed(servers):
            server.stop()
        postgres.stop()


def _steps_by_worker(workers: dict[str, Server]) -> dict[str, list[str]]:
    """The sector steps each worker's log says it started, in order (the step logs its host and pid)."""
    return {name: [step for step, pid in STEP_LINE.findall(w.log.read_text()) if int(pid) == w.process.pid]
            for name, w in workers.items()}


def _holdout_metrics(tracking_uri: str) -> dict[tuple[str, str], dict]:
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.model_type != ''")
    return {
        (r.data.tags["sector"], r.data.tags["model_type"]): {k: v for k, v in r.data.metrics.items() if "seconds" not in k}
        for r in runs
    }


def test_sector_steps_run_on_both_workers_survive_a_killed_one_and_register_what_in_process_does(
    cluster, trained_models
):
    workers = cluster["workers"]
    config = cluster["root"] / "training.json"
    config.write_text(json.dumps(FAST_TRAINING))
    tags = json.dumps({PARTITION_RANGE_START: SECTORS[0], PARTITION_RANGE_END: SECTORS[-1]})
    run = Server("run", [str(BIN / "dagster"), "job", "execute", "-m", LOCATION, "-j", "model_training_job",
                         "-c", str(config), "--tags", tags], cluster["env"], cluster["root"])
    try:
        # w2 dies in the middle of its second sector: dask hands the step to w1, which trains it again.
        wait_until(lambda: len(_steps_by_worker(workers)["w2"]) >= 2 or run.process.poll() is not None, 300,
                   "w2 to start its second sector")
        started = _steps_by_worker(workers)
        os.kill(workers["w2"].process.pid, signal.SIGKILL)
        assert run.process.wait(timeout=300) == 0, run.tail(60)
    finally:
        run.stop()
    assert started["w1"] and len(started["w2"]) >= 2, started
    finished = _steps_by_worker(workers)
    assert set(finished["w1"]) | set(started["w2"]) == {f"train_{key.replace('-', '_')}" for key in SECTORS}
    assert started["w2"][-1] in finished["w1"], "the step w2 died in was trained again on w1"

    distributed = _holdout_metrics(cluster["tracking_uri"])
    in_process = _holdout_metrics(trained_models.registry.tracking_uri)
    assert len(distributed) == 6 * len(SECTORS)  # one version each: nothing half-written by the killed step
    for key, metrics in distributed.items():
        assert metrics == pytest.approx(in_process[key], abs=1e-9, rel=0), key
    client = MlflowClient(cluster["tracking_uri"], registry_uri=cluster["tracking_uri"])
    names = [m.name for m in client.search_registered_models()]
    assert len(names) == 6 * len(SECTORS)
    assert all(client.get_model_version_by_alias(name, "champion").version == "1" for name in names)
