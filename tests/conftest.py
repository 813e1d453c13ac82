"""Shared fixtures: isolated Prefect home and caches, real face photos, and deliberately bad files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# One torch/BLAS thread per test process, under pytest-xdist (`make test` runs two workers, which
# then share the two cores) or not, and so for the processes its tests start (they inherit it).
# Without this, torch's OpenMP team in one process spins against another's and both slow many
# times over (one AURA test: 299 s with default threads on a loaded machine, 2.7 s with one).
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_threads] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# Before Prefect is imported anywhere: isolate its home and keep its server offline-quiet.
_SESSION_TMP = Path(os.environ.get("AFFECTFLOW_TEST_TMP", "/tmp")) / f"affectflow-tests-{os.getpid()}"
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect-home")
(_SESSION_TMP / "prefect-home").mkdir(parents=True, exist_ok=True)
os.environ["AFFECTFLOW_CACHE_DIR"] = str(_SESSION_TMP / "cache")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# As the CLI does at its start: in-process extractions run on task threads, whose arenas are
# chosen when they first allocate (stages/extraction/allocator.py); subprocesses inherit glibc's variables.
from stages.extraction.allocator import keep_large_buffers  # noqa: E402
from stages.synthetic.cached_features import write_feature_group  # noqa: E402, F401 (the tests' import)

keep_large_buffers()


# The test files longest first (seconds in a `make test` run: --durations summed per file): xdist's
# --dist loadfile hands files to the two workers in collection order, so a long file handed out last
# runs alone at the end (test_resume's 69 s did: suite time). The short rest keep pytest's order.
LONGEST_FIRST = (
    "test_cluster",  # 165
    "test_train_heads",  # 161
    "test_bench",  # 137
    "test_bench_demo_store",  # 88
    "test_causal",  # 88
    "test_s3",  # 78
    "test_resume",  # 69
    "test_heads",  # 68
    "test_faud",  # 61
    "test_readme",  # 51
    "test_lasca",  # 34
    "test_face",  # 29
    "test_extract",  # 28
    "test_video",  # 25
    "test_allocator",  # 22
    "test_real_layouts",  # 20
)


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        module = item.module.__name__.rpartition(".")[2]
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file and among the rest, the order is pytest's


@pytest.fixture(scope="session", autouse=True)
def _session_tmp():
    _SESSION_TMP.mkdir(parents=True, exist_ok=True)
    yield
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def models_dir(_session_tmp) -> Path:
    """``AFFECTFLOW_MODELS_DIR`` for the whole session (subprocesses included): a folder of its own,
    filled once from the user's checked model files. Only a missing or corrupt user copy is fetched
    (by ``make install``'s own command); during the tests nothing reads the home cache or the network."""
    from stages.extraction.encoders import model_files

    user_dir = model_files.models_dir()
    session_dir = _SESSION_TMP / "models"
    session_dir.mkdir(parents=True, exist_ok=True)
    for model in model_files.MODEL_FILES:
        source = user_dir / model.filename
        try:
            model_files.verify(model, source)
        except (OSError, ValueError):
            source = model_files.fetch(model, force=True)
        shutil.copyfile(source, session_dir / model.filename)
        model_files.verify(model, session_dir / model.filename)
    os.environ["AFFECTFLOW_MODELS_DIR"] = str(session_dir)
    yield session_dir
    os.environ.pop("AFFECTFLOW_MODELS_DIR", None)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whatever ran before it (heads built before
    ``fit`` seeds the trainer draw their initial weights from it)."""
    from heads.trainer import seed_everything

    seed_everything(0)


# One temporary Prefect server for the whole `pytest` run, both xdist workers included: a server's
# start (its imports and the database's migrations) is ~20 s of CPU, once instead of once per worker
# (suite time). The controller starts it when the run is whole folders (the suite); otherwise the
# first test process that needs it does, under a lock in a folder the controller names for its
# workers. The controller stops it, by its PID, when the run ends.
_SHARED = "AFFECTFLOW_TEST_SHARED"


def pytest_configure(config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        shared = Path(os.environ.get("AFFECTFLOW_TEST_TMP", "/tmp")) / f"affectflow-tests-shared-{os.getpid()}"
        shared.mkdir(parents=True, exist_ok=True)
        os.environ[_SHARED] = str(shared)  # inherited by the workers, started after this hook
        suite = all(Path(arg).is_dir() for arg in config.args)  # whole folders: tests that need the server
        if suite and not config.option.collectonly:
            _start_shared_server(shared)  # now: it boots while the workers start and collect (suite time)


def pytest_unconfigure(config) -> None:
    if hasattr(config, "workerinput"):
        return
    # the controller's own folder, made when it imported this module: under xdist no session fixture
    # of its runs to remove it
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)
    if _SHARED not in os.environ:
        return
    shared = Path(os.environ.pop(_SHARED))
    pid_file = shared / "prefect-server.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: _ended(pid), 15, "the Prefect server to stop", interval=0.1)
        except ProcessLookupError:
            pass
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(shared, ignore_errors=True)


def _ended(pid: int) -> bool:
    """Whether a process has exited; reaped here when it is this process's child (the controller
    starts the server for a whole-suite run), whose exit otherwise leaves it a zombie in /proc."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:  # a test process started it: its parent's to reap, not ours
        pass
    return not Path(f"/proc/{pid}").exists()


def _start_shared_server(shared: Path) -> str:
    """Start the run's temporary Prefect server unless a test process (or the controller) has:
    the command and settings of Prefect's own test harness
    (prefect.testing.utilities.prefect_test_harness), a SQLite database of its own. Returns its
    API URL without waiting for it."""
    import fcntl

    import prefect

    url_file = shared / "prefect-server.url"
    with open(shared / "prefect-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not url_file.is_file():
            port = free_port()
            env = {
                **os.environ,
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{shared / 'prefect.db'}",
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
            }
            with open(shared / "prefect-server.log", "w") as log:
                server = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parents[1])]
                    + ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
                    + ["--log-level", "error", "--lifespan", "on"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,  # outlives the test process that started it: the controller stops it
                )
            (shared / "prefect-server.pid").write_text(str(server.pid))
            url_file.write_text(f"http://127.0.0.1:{port}/api")
        return url_file.read_text()


def _shared_prefect_server() -> str:
    """The API URL of the run's one temporary Prefect server, once it answers. The first test
    process to see it answer copies its freshly migrated database (``migrated_prefect_db``)
    before any test has written to it."""
    import fcntl
    import sqlite3
    import urllib.request
    from contextlib import closing

    shared = Path(os.environ[_SHARED])
    url = _start_shared_server(shared)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, 120, f"the test run's Prefect server ({shared / 'prefect-server.log'})", interval=0.5)
    with open(shared / "prefect-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / _MIGRATED_DB).is_file():
            # SQLite's online backup: a consistent copy of a database in use (WAL included); a
            # connection's `with` only commits, closing() closes it
            with closing(sqlite3.connect(shared / "prefect.db")) as source:
                with closing(sqlite3.connect(shared / "copying.db")) as copy:
                    source.backup(copy)
            (shared / "copying.db").rename(shared / _MIGRATED_DB)
    return url


_MIGRATED_DB = "prefect-migrated.db"


@pytest.fixture
def migrated_prefect_db(prefect_harness) -> Path:
    """A copy of the run's Prefect database as its server left it after starting (its migrations
    and Prefect's block types, before any test wrote to it): for a test that starts a Prefect server
    of its own, which then starts as on any start after a first (the migrations are ~13 s of CPU;
    the run's server has run them with the same Prefect)."""
    return Path(os.environ[_SHARED]) / _MIGRATED_DB


@pytest.fixture(scope="session")
def prefect_harness():
    """The run's temporary Prefect server for every in-process flow run of the session, without
    flow-run heartbeats: a flow run's end joins its heartbeat thread, which sleeps in 1 s steps, so
    each run ended ~1 s after its work (1.15 s → 0.16 s for an empty flow, measured). No test here
    reads heartbeats (the server's crash detection for runs whose process died); command-line and
    deployment runs in subprocesses keep Prefect's default."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    settings = {PREFECT_API_URL: _shared_prefect_server(), PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    with temporary_settings(updates=settings):
        yield


@pytest.fixture(scope="session")
def prefect_api(prefect_harness) -> dict[str, str]:
    """Environment for CLI subprocesses: the session's Prefect server, so a run starts no temporary
    server of its own (suite time; tests/test_cluster.py deploys to it too)."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def crash_after_chunks(n: int) -> dict[str, str]:
    """Environment for a ``cli(..., start_new_session=True)`` run that SIGKILLs itself and its
    process group the moment its n-th feature chunk is marked done (tests/crashpoint)."""
    path = os.pathsep.join(filter(None, [str(REPO / "tests" / "crashpoint"), os.environ.get("PYTHONPATH")]))
    return {"AFFECTFLOW_CRASH_AFTER_CHUNKS": str(n), "PYTHONPATH": path}


def crashed(proc: subprocess.Popen, timeout: float = 600) -> None:
    """Wait for a run started with :func:`crash_after_chunks` to die by SIGKILL, as planned."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, f"the run was meant to crash, it exited {proc.returncode}: {out[-3000:]}"


def write_csv_dataset(root: Path, n: int, extra_rows: list[str] | None = None) -> Path:
    """A csv-layout dataset of ``n`` real photos (cycled), with subjects and splits."""
    from stages.synthetic.demo_catalogue import write_photo_dataset

    return write_photo_dataset(root, n, extra_rows)


def write_bad_files(root: Path) -> dict[str, str]:
    """Every kind of bad or awkward input the extraction must survive; name → relative path."""
    from skimage import data

    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    astro = Image.fromarray(data.astronaut())
    astro.save(bad / "whole.jpg", quality=90)
    raw = (bad / "whole.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not an image\n")
    astro.convert("L").save(bad / "gray.jpg")
    astro.convert("CMYK").save(bad / "cmyk.jpg")
    Image.fromarray((np.asarray(astro.convert("L"), dtype=np.uint16) * 257)).save(bad / "sixteen.png")
    Image.new("RGB", (12000, 9000), (120, 90, 60)).save(bad / "huge.jpg", quality=50)
    return {
        "truncated": "bad/truncated.jpg",
        "empty": "bad/empty.jpg",
        "missing": "bad/does-not-exist.jpg",
        "text": "bad/text.jpg",
        "gray": "bad/gray.jpg",
        "cmyk": "bad/cmyk.jpg",
        "sixteen": "bad/sixteen.png",
        "huge": "bad/huge.jpg",
    }


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """The ``affectflow`` command as a process of its own: for what a process shows (its exit on
    SIGKILL, its environment, its allocator, its imports)."""
    return subprocess.Popen(
        [str(BIN / "affectflow"), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def run_cli(*args: str) -> str:
    """The ``affectflow`` command run in this process (typer's test runner): the same code as the
    command line, without a new interpreter's ~5 s of imports where the process is not what a test
    shows. Fails the test on a non-zero exit; returns the command's standard output."""
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"affectflow {' '.join(args)}\n{result.output[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> str:
    """Where a module's bench smoke runs keep the demo catalogue's stores (bench/common.demo_store):
    built by the first bench that reads one, copied by the others."""
    return str(tmp_path_factory.mktemp("bench-smoke-cache"))


def run_bench_smoke(name: str, tmp_path: Path, smoke_cache: str, monkeypatch, capsys) -> None:
    """``python bench/<name>.py --smoke`` as `make bench` starts it, run by runpy in this test
    process (as ``__main__``, with the script's argv, the repository as working directory and
    bench/ importable), its flow runs on the session's Prefect server; it must end well and print
    its JSON and its table. In process, not a new interpreter: a bench's imports and model loads
    (~6 s a process) are this process's, already paid (suite time); the benches that need a fresh
    process start one themselves (bench/extract.py's allocator runs, bench/retrain.py's commands)."""
    import json
    import runpy
    import tempfile

    from prefect.settings import PREFECT_API_URL

    script = REPO / "bench" / f"{name}.py"
    assert f"bench/{name}.py" in (REPO / "Makefile").read_text()  # what `make bench` runs
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [str(script), "--smoke"])
    monkeypatch.setattr(sys, "path", [*sys.path, str(REPO / "bench")])  # where bench/common.py leaves it
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # TMPDIR is read once per process
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the session's server: no bench starts one
    monkeypatch.setenv("AFFECTFLOW_BENCH_SMOKE_CACHE", smoke_cache)
    import common  # bench/common.py: SMOKE is read from argv at its first import, which may have been a test's

    monkeypatch.setattr(common, "SMOKE", True)
    capsys.readouterr()
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    result = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert result["machine"]["cpus"] >= 1
    assert "<!-- bench:" in out  # its docs/benchmarks.md table was built (printed, not written)
