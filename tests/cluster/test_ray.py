"""`simq compile --ray` on a local Ray cluster (this machine, one thread per worker): the same
search as without Ray, spread over worker processes; worker and driver deaths lose nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from simq.cli import main  # noqa: E402
from simq.search import Store  # noqa: E402

MODEL = "zoo:digits-cnn"


def _args(zoo, out: Path, *extra: str) -> list[str]:
    return [
        "compile", MODEL, "--cache-dir", str(zoo.cache_dir), "--out", str(out), "--threads", "1", "--population", "4",
        "--no-baselines", *extra,
    ]  # fmt: skip


def _candidates(out: Path) -> list[tuple]:
    with sqlite3.connect(out / Store.FILENAME) as db:
        return db.execute(
            "SELECT id, config_key, status, metrics, worker FROM candidates WHERE kind = 'candidate' ORDER BY id"
        ).fetchall()


def _committed(out: Path) -> int:
    """Candidates committed so far by a run in progress (0 while its store is being created)."""
    try:
        return len(_candidates(out)) if (out / Store.FILENAME).exists() else 0
    except sqlite3.OperationalError:  # the file exists, its tables not yet
        return 0


def _pareto(out: Path) -> list[str]:
    return sorted(row["config"] for row in json.loads((out / "summary.json").read_text())["rows"])


@pytest.fixture(scope="module")
def plain_run(zoo, tmp_path_factory):
    """A run in this process, with predicted latency (its cost model reused by the Ray runs)."""
    out = tmp_path_factory.mktemp("plain")
    assert main(_args(zoo, out, "--budget", "8", "--latency", "predicted", "--cost-model-samples", "4")) == 0
    return out


def test_a_ray_run_asks_the_same_candidates_and_finds_the_same_pareto_set(zoo, plain_run, tmp_path):
    out = tmp_path / "ray"
    extra = ("--budget", "8", "--latency", "predicted", "--cost-model", str(plain_run / "costmodel"))
    assert main([*_args(zoo, out, *extra), "--ray"]) == 0
    plain, distributed = _candidates(plain_run), _candidates(out)
    # The same configs with the same metrics (the order of commits within a batch may differ).
    assert sorted((key, metrics) for _, key, _, metrics, _ in distributed) == sorted((key, metrics) for _, key, _, metrics, _ in plain)
    assert _pareto(out) == _pareto(plain_run)
    workers = {worker for *_, worker in distributed}
    assert None not in workers and len(workers) >= 2, workers  # built in at least two worker processes
    assert all(worker is None for *_, worker in plain)


def test_a_steady_state_search_asks_while_candidates_are_in_flight(zoo, plain_run, tmp_path, monkeypatch):
    """No generation barrier: each result is told alone as it arrives, and the search is asked
    again while others are still being evaluated; the budget is met with distinct candidates."""
    from simq.search import ALGORITHMS
    from simq.search._algorithms import Linas

    events: list[tuple[str, int]] = []

    class Logged(Linas):
        def ask(self):
            asked = super().ask()
            events.append(("ask", len(asked)))
            return asked

        def tell(self, x, m):
            events.append(("tell", len(x)))
            super().tell(x, m)

    monkeypatch.setitem(ALGORITHMS, "logged", Logged)
    out = tmp_path / "steady"
    extra = ("--budget", "8", "--latency", "predicted", "--cost-model", str(plain_run / "costmodel"), "--algorithm", "logged")
    assert main([*_args(zoo, out, *extra), "--steady-state", "--ray"]) == 0
    candidates = _candidates(out)
    assert len(candidates) == 8 and len({key for _, key, *_ in candidates}) == 8
    assert all(n == 1 for kind, n in events if kind == "tell")
    asked = told = 0
    asked_in_flight = False
    for kind, n in events:
        if kind == "ask":
            asked_in_flight |= 0 < told < asked  # some told, others of earlier asks still out
            asked += n
        else:
            told += n
    assert asked_in_flight, events
    assert len({worker for *_, worker in candidates}) >= 2


def _ray_task_pids(name: str) -> list[int]:
    """Processes running the Ray task `name` now (Ray titles a busy worker ``ray::NAME``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _run_until(process: subprocess.Popen, done, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not done():
        time.sleep(0.02)


def test_a_worker_killed_mid_task_loses_and_repeats_nothing(zoo, tmp_path):
    out = tmp_path / "killed-worker"
    args = _args(zoo, out, "--budget", "6", "--final-models", "1", "--ray")  # measured latency: builds and timings are tasks
    process = subprocess.Popen([sys.executable, "-m", "simq", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed: list[int] = []

    def kill_a_busy_worker() -> bool:
        if _committed(out) >= 1:
            for pid in _ray_task_pids("_build"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return True
        return False

    _run_until(process, kill_a_busy_worker)
    assert killed, "no worker was caught building"
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    candidates = _candidates(out)
    assert len(candidates) == 6 and all(status == "ok" for _, _, status, _, _ in candidates)  # the lost task was retried
    assert len({key for _, key, *_ in candidates}) == 6
    assert all("latency_ratio" in json.loads(metrics) for *_, metrics, _ in candidates)  # timed on the measuring node


def test_a_killed_driver_resumes_and_finishes_the_budget(zoo, tmp_path):
    out = tmp_path / "killed-driver"
    args = _args(zoo, out, "--budget", "8", "--final-models", "1", "--ray", "--latency", "predicted", "--cost-model-samples", "4")
    process = subprocess.Popen([sys.executable, "-m", "simq", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _run_until(process, lambda: _committed(out) >= 3)
    process.kill()
    process.wait()
    finished = _candidates(out)
    assert 3 <= len(finished) < 8, "the driver should have been killed mid-search"
    resumed = subprocess.run([sys.executable, "-m", "simq", *args, "--resume"], capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    final = _candidates(out)
    assert final[: len(finished)] == finished and len(final) == 8


def test_artifacts_travel_through_a_shared_folder_to_the_measuring_node(zoo, tmp_path):
    out, share = tmp_path / "shared", tmp_path / "share"
    share.mkdir()
    assert main([*_args(zoo, out, "--budget", "3", "--final-models", "1"), "--ray", "--ray-share", str(share)]) == 0
    candidates = _candidates(out)
    assert len(candidates) == 3 and all("latency_ratio" in json.loads(metrics) for *_, metrics, _ in candidates)
    published = [p for p in share.iterdir() if not p.name.startswith(".")]
    assert published and all((p / "artifact.json").is_file() for p in published)  # one folder per artifact digest
    assert not [p for p in share.iterdir() if p.name.endswith(".partial")]


def test_a_cluster_that_cannot_be_reached_is_a_one_line_error(zoo, tmp_path, capsys):
    assert main([*_args(zoo, tmp_path / "out", "--budget", "2"), "--ray", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot join the Ray cluster at 127.0.0.1:9") and "\n" not in err
    assert not (tmp_path / "out" / Store.FILENAME).exists()
    assert main([*_args(zoo, tmp_path / "out", "--budget", "2"), "--ray-share", str(tmp_path)]) == 2
    assert "--ray-share goes with --ray" in capsys.readouterr().err


def test_simq_worker_names_the_resource_of_this_machines_fingerprint(capsys):
    from simq.cluster import measure_resource
    from simq.targets import TargetRegistry

    assert main(["worker", "--target", "ort-cpu", "--threads", "1", "--head", "--dry-run"]) == 0
    captured = capsys.readouterr()
    resource = measure_resource(TargetRegistry().get("ort-cpu", threads=1).fingerprint())
    assert resource in captured.out and "ray start --head" in captured.out and "--block" in captured.out
    assert resource != measure_resource(TargetRegistry().get("ort-cpu", threads=2).fingerprint())
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "--target", "ort-cpu"])  # neither --address nor --head
    assert exit_.value.code == 2


def test_a_driver_on_another_fingerprint_plans_and_measures_for_the_measuring_node(zoo, tmp_path):
    """A driver whose CPU has no integer kernels (as its target sees it) joins a cluster whose
    only measuring node is this machine: the job is planned for the node (its INT8 kernels
    offered), and the reference, baselines, candidates and final pass are timed there."""
    import ray

    from simq.cluster import RayExecutor, measure_resource
    from simq.errors import SimqError
    from simq.search import CompileOptions, JobSpec, compile_model, prepare_job
    from simq.targets import TargetRegistry
    from simq.targets.ort_cpu import OrtCpuTarget

    node = TargetRegistry().get("ort-cpu", threads=1).fingerprint()
    driver = OrtCpuTarget(threads=1, isa=("fma",))  # an x86 without AVX2: no integer GEMM kernels
    assert driver.fingerprint() != node and not driver.supports("Conv", "int8")
    ray.init(address="local", num_cpus=2, resources={measure_resource(node): 1}, include_dashboard=False, log_to_driver=False)
    with RayExecutor() as executor:
        planned = executor.target_for(driver)
        assert planned.fingerprint() == node and planned.supports("Conv", "int8")
        spec = JobSpec(model=MODEL, threads=1, cache_dir=zoo.cache_dir)
        job = prepare_job(spec, zoo, checked=planned).job
        assert any("int8" in knob.domain for knob in job.pipeline.knobs)
        with pytest.raises(SimqError, match="planned for"):  # a job planned for the driver's own CPU is refused
            executor.fingerprint(driver)
        out = tmp_path / "elsewhere"
        result = compile_model(job, CompileOptions(budget=3, population=3, final_models=1), out, executor=executor)
    assert len(result.pareto) >= 1
    with sqlite3.connect(out / Store.FILENAME) as db:
        fingerprints = {f for (f,) in db.execute("SELECT fingerprint FROM measurements")}
        kinds = {k for (k,) in db.execute("SELECT kind FROM candidates WHERE status = 'ok'")}
    assert fingerprints == {node.key()}
    assert {"reference", "baseline", "candidate"} <= kinds
    assert json.loads((out / "summary.json").read_text())["fingerprint"] == node.key()
    # The final pass: every model of the front and every baseline timed in rotation there.
    with sqlite3.connect(out / Store.FILENAME) as db:
        finals = [json.loads(f) for (f,) in db.execute("SELECT final FROM candidates WHERE final IS NOT NULL AND kind != 'reference'")]
    finals = [f for f in finals if f]  # {}: not in this final pass
    assert len(finals) >= 2 and all(f["rounds"] >= 10 and f["latency_ratio_low"] <= f["latency_ratio"] <= f["latency_ratio_high"] for f in finals)
