"""Training on a real dask cluster on loopback, as dagster_home_distributed/dagster.yaml configures it:
a dask scheduler and two workers, PostgreSQL instance storage and an MLflow tracking server over
HTTP, all started and stopped here. A worker is killed in the middle of a sector's step, whichever
worker dask happened to give which step."""

import json
import os
import re
import shutil
import signal

import pytest
from distributed import Client
from mlflow import MlflowClient

from turbomode_pipeline.partitions import SECTOR_BY_KEY
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline_tests.support import FAST_TRAINING
from turbomode_pipeline_tests.servers import (
    BIN, LOCATION, REPO, PostgresServer, Server, free_port, instance_home, mlflow_server, server_env, wait_until,
)

SECTORS = list(SECTOR_BY_KEY)[:4]  # 4 of the 11: the CI budget; 24 models
STEP_LINE = re.compile(r"(train_\w+) on \S+ pid (\d+)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, trained_models):
    """PostgreSQL, MLflow over HTTP, a dask scheduler and workers `w1`, `w2`: the environment they share."""
    root = tmp_path_factory.mktemp("distributed")
    (root / "data").mkdir()
    shutil.copy(trained_models.warehouse_path, root / "data" / "warehouse.duckdb")
    # the copy's records of the in-process versions name versions of the fixture's MLflow, not of this server's
    Warehouse(path=str(root / "data" / "warehouse.duckdb")).execute("DROP TABLE model_versions", "DROP TABLE champion_history")
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
        yield {"root": root, "env": env, "workers": workers, "tracking_uri": url, "scheduler": scheduler}
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


def _kill_a_worker_mid_step(scheduler: str, workers: dict[str, Server], run: Server) -> tuple[str, str]:
    """SIGKILL a worker while it certainly runs a sector step, whichever worker dask gave which step to:
    a worker that logged a step's start is frozen (SIGSTOP), so it cannot report the step's end, and
    killed only if the scheduler still holds that step as processing on it; else it is thawed and the
    next poll tries again. Returns the killed worker's name and the step it died in."""
    with Client(scheduler, timeout=30) as client:

        def kill_one():
            started = _steps_by_worker(workers)
            names = {address: info["name"] for address, info in client.scheduler_info()["workers"].items()}
            for address, keys in client.processing().items():
                name = names.get(address)
                if name not in workers:
                    continue
                running = [key for key in keys if key.rsplit(".", 1)[-1] in started[name]]
                if not running:
                    continue
                os.kill(workers[name].process.pid, signal.SIGSTOP)
                if running[0] in client.processing().get(address, ()):
                    os.kill(workers[name].process.pid, signal.SIGKILL)
                    return name, running[0].rsplit(".", 1)[-1]
                os.kill(workers[name].process.pid, signal.SIGCONT)
            assert run.process.poll() is None, f"the run ended before a worker was caught mid-step:\n{run.tail(30)}"

        return wait_until(kill_one, 300, "a worker in the middle of a sector step", every=0.2)


def test_sector_steps_run_on_both_workers_survive_a_killed_one_and_register_what_in_process_does(
    cluster, trained_models
):
    workers = cluster["workers"]
    config = cluster["root"] / "training.json"
    training = FAST_TRAINING["ops"]["sector_models"]["config"]
    config.write_text(json.dumps({"ops": {"sector_models": {"config": {**training, "sectors": SECTORS}}}}))
    # the week the in-process fixture trained: the same samples and cutoff, so the same models
    tags = json.dumps({"dagster/partition": str(trained_models.week)})
    run = Server("run", [str(BIN / "dagster"), "job", "execute", "-m", LOCATION, "-j", "model_training_job",
                         "-c", str(config), "--tags", tags], cluster["env"], cluster["root"])
    try:
        # One worker dies in the middle of a sector: dask hands the step to the other, which trains it again.
        killed, step = _kill_a_worker_mid_step(cluster["scheduler"], workers, run)
        assert run.process.wait(timeout=300) == 0, run.tail(60)
    finally:
        run.stop()
    (survivor,) = set(workers) - {killed}
    finished = _steps_by_worker(workers)
    assert step in finished[survivor], f"{step}, which {killed} died in, was trained again on {survivor}: {finished}"
    assert set(finished["w1"]) | set(finished["w2"]) == {f"train_{key.replace('-', '_')}" for key in SECTORS}

    distributed = _holdout_metrics(cluster["tracking_uri"])
    in_process = _holdout_metrics(trained_models.registry.tracking_uri)
    assert len(distributed) == 6 * len(SECTORS)  # one version each: nothing half-written by the killed step
    for key, metrics in distributed.items():
        assert metrics == pytest.approx(in_process[key], abs=1e-9, rel=0), key
    client = MlflowClient(cluster["tracking_uri"], registry_uri=cluster["tracking_uri"])
    names = [m.name for m in client.search_registered_models()]
    assert len(names) == 6 * len(SECTORS)
    assert all(client.get_model_version_by_alias(name, "champion").version == "1" for name in names)
