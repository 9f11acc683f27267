"""Job scripts: the CLI's own code path, and a real `ray job submit` to a real, token-guarded head.

The cluster tests start `ray start --head --block` bound to 127.0.0.1 with a temporary directory,
HOME and token of their own, and stop it by terminating that process (never `ray stop`, which
stops every Ray on the machine, other people's included).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import numpy as np
import pyarrow.dataset as pads
import pytest

from faceattr_ray.cli import get_args_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = {  # script -> the `faceattr-ray` subcommand it runs
    "annotate.py": ["annotate"],
    "lnet_pretrain.py": ["train", "lnet-pretrain"],
    "anet_pretrain.py": ["train", "anet-pretrain"],
    "finetune.py": ["train", "finetune"],
    "train_heads.py": ["train", "heads"],
    "evaluate.py": ["evaluate"],
}
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


# --- the scripts are the CLI ---------------------------------------------------------------------


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    # -S: no site-packages, so the installed package is out of reach; the script must find the
    # checkout by itself, as on a cluster node that only has the uploaded working_dir.
    return subprocess.run([sys.executable, "-S", os.path.join(REPO, "jobs", script), *args],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=60)


def _cli_help(command: list[str]) -> str:
    parser = get_args_parser()
    for name in command:  # walk down to the subcommand's own parser
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser.format_help()


def test_every_job_script_is_listed():
    on_disk = {f for f in os.listdir(os.path.join(REPO, "jobs"))
               if f.endswith(".py") and not f.startswith("_")}  # fmt: skip
    assert on_disk == set(JOBS)


@pytest.mark.parametrize("script", sorted(JOBS))
def test_job_script_runs_the_cli_subcommand(script):
    result = _run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout == _cli_help(JOBS[script])


def test_job_script_reports_errors_like_the_cli():
    result = _run_script("annotate.py", "images/")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "faceattr-ray annotate: error: the following arguments are required: --output "
        "(see `faceattr-ray annotate --help`)"
    ]


# --- a real head, token authentication on --------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@dataclass
class Head:
    dashboard: str  # http://127.0.0.1:PORT, where `ray job submit` goes
    env: dict[str, str]  # HOME, PATH and the token mode of this head; no token
    token: str


def _wait_until_up(proc: subprocess.Popen, url: str, token: str, log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log) as f:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{f.read()[-3000:]}")
        # Refused, reset or 5xx while the dashboard starts: try again.
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the Ray head did not answer on {url} within {timeout:.0f} s")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Ray's workers start sessions of their own, so a process
    group does not hold them all). Linux /proc; elsewhere none are found."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        kids = children.get(stack.pop(), [])
        found += kids
        stack += kids
    return found


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the `ray start --block` process (it stops its node), then kill what is left."""
    family = _descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    time.sleep(1)  # the raylet's workers exit when it does
    for pid in family:  # only processes this test started; a reused pid is gone by now
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def head():
    # A short temp dir: Ray's unix sockets live under it, and socket paths are limited to ~107 B.
    work = tempfile.mkdtemp(prefix="fr-", dir="/tmp")
    home = os.path.join(work, "home")  # ~/.ray/auth_token of this test, not the user's
    os.makedirs(home)
    token = secrets.token_hex(16)
    gcs, dash, agent, client = _free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        HOME=home,
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),  # `python` = us
        RAY_AUTH_MODE="token",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # stop at once at the end of the test
        RAY_DATA_DISABLE_PROGRESS_BARS="1",
        RAY_USAGE_STATS_ENABLED="0",
        OMP_NUM_THREADS="1",
    )
    log = os.path.join(work, "ray-start.log")
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--dashboard-agent-listen-port", str(agent), "--ray-client-server-port", str(client),
           "--num-cpus", "4", "--object-store-memory", str(300 * 2**20),
           "--temp-dir", os.path.join(work, "r"), "--disable-usage-stats"]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=dict(env, RAY_AUTH_TOKEN=token), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{dash}"
        _wait_until_up(proc, f"{url}/api/version", token, log, timeout=90)
        yield Head(dashboard=url, env=env, token=token)
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def _ray_job(head: Head, token: str | None, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`ray job ARGS...` as a submitter holding ``token``; None: one that knows of no token."""
    if token is None:
        env = dict(head.env, RAY_AUTH_MODE="disabled")  # sends no token header at all
    else:
        env = dict(head.env, RAY_AUTH_TOKEN=token)
    return subprocess.run([RAY, "job", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _tiny_bundle(path: str) -> None:
    """Random weights, real shapes: the job does not care whether the model is any good."""
    import torch

    from faceattr_ray.bundle import Bundle, save_bundle
    from faceattr_ray.models import ANet, ANetConfig, LNet, LNetConfig

    torch.manual_seed(0)
    names = ["Smiling", "Male", "Eyeglasses"]
    lnet = LNetConfig(channels=(8, 16, 16, 16, 8), num_attributes=3, head_hidden=16,
                      num_classes=0)  # fmt: skip
    anet = ANetConfig(patch_size=32, grid=3, channels=(4, 6, 8, 8), feature_dim=16,
                      num_attributes=3, kernels=(5, 3, 3, 3))  # fmt: skip
    rng = np.random.default_rng(0)
    heads = {"weight": rng.normal(size=(3, 16)).astype(np.float32),
             "bias": rng.normal(size=3).astype(np.float32)}  # fmt: skip
    save_bundle(path, Bundle(path=None, config={}, attributes=names, lnet_o=LNet(lnet),
                             lnet_s=LNet(lnet), anet=ANet(anet), heads=heads))  # fmt: skip


def _write_inputs(root: str) -> tuple[str, str, list[str]]:
    """A tiny bundle, and a folder of generated scenes plus one broken file."""
    from faceattr_ray.data.synthetic import write_wild

    model = os.path.join(root, "model")
    _tiny_bundle(model)
    images = os.path.join(write_wild(os.path.join(root, "wild"), count=4, identities=6),
                          "img_celeba")  # fmt: skip
    with open(os.path.join(images, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8 this is not a JPEG")
    return model, images, sorted(os.path.join(images, f) for f in os.listdir(images))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_annotate_job_on_a_token_cluster(head, tmp_path):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data import load_image
    from faceattr_ray.pipeline.schema import model_version
    from faceattr_ray.predictor import Predictor

    model, images, paths = _write_inputs(str(tmp_path))
    out = str(tmp_path / "out")
    job = f"annotate-{secrets.token_hex(4)}"
    try:
        submitted = _ray_job(
            head, head.token, "submit", "--address", head.dashboard, "--submission-id", job,
            "--runtime-env", "runtime_env.yaml", "--",
            "python", "jobs/annotate.py", images, "--model", model, "--output", out,
            "--batch-size", "4", "--actors", "1", timeout=180,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        _ray_job(head, head.token, "stop", "--address", head.dashboard, job, timeout=30)
        raise
    status = _ray_job(head, head.token, "status", "--address", head.dashboard, job, timeout=30)
    assert submitted.returncode == 0, submitted.stdout[-4000:] + submitted.stderr[-2000:]
    assert f"Job '{job}' succeeded" in status.stdout  # how `ray job status` says SUCCEEDED

    table = pads.dataset(out, format="parquet").to_table().to_pylist()
    rows = {r["path"]: r for r in table}
    assert sorted(rows) == paths and len(table) == len(paths)  # one row per input, none lost
    broken = rows.pop(os.path.join(images, "broken.jpg"))
    assert broken["status"] == "error" and broken["error"]
    bundle = load_bundle(model)
    assert {r["model_version"] for r in table} == {model_version(bundle.config)}
    # The cluster's numbers are the library's: the same Predictor run here, in-process.
    local = Predictor(bundle, "cpu", "lnet").predict([load_image(p) for p in rows])
    for (path, row), result in zip(rows.items(), local, strict=True):
        assert row["status"] == ("ok" if result.faces else "no_face"), path
        if result.faces:
            face = result.faces[0]
            np.testing.assert_allclose(row["box"], face.box, rtol=1e-4, atol=1e-2)
            got = [row[name] for name in bundle.attributes]
            np.testing.assert_allclose(got, face.attributes, rtol=1e-3, atol=1e-4)
    with open(os.path.join(out, "_SUMMARY.json")) as f:
        assert json.load(f)["inputs"] == len(paths)


@pytest.mark.slow
@pytest.mark.parametrize("token, refusal", [
    ("0" * 32, "Invalid authentication token"),
    (None, "Missing authentication token"),
])  # fmt: skip
def test_submit_without_the_right_token_is_refused(head, token, refusal):
    result = _ray_job(head, token, "submit", "--address", head.dashboard, "--no-wait", "--",
                      "python", "-c", "print('should not run')", timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "AuthenticationError" in result.stderr and refusal in result.stderr
    listed = _ray_job(head, head.token, "list", "--address", head.dashboard, timeout=30)
    assert listed.returncode == 0 and "should not run" not in listed.stdout
