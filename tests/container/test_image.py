"""The serving image built and run for real with podman: answers, user, contents, size, shutdown, demo target."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from tests.container import podman
from tests.container.conftest import MODEL

pytestmark = [pytest.mark.container, pytest.mark.slow]

MAX_IMAGE_BYTES = 400 * 1000**2
GRACE_S = 20
HOLD_S = 4.0


def model_file(repository: Path) -> Path:
    (path,) = sorted(repository.glob(f"{MODEL}/*/model.onnx"))
    return path


def digit_images(rows: int) -> np.ndarray:
    """The first images of the digits data set: 8x8 flattened to 64 grey levels in 0..16."""
    return load_digits().data[:rows].astype(np.float32)


def infer_in_container(container: podman.Container, session: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    """POSTs ``x`` as a v2 JSON infer request and returns the outputs by name."""
    (model_input,) = session.get_inputs()
    request = {"inputs": [{"name": model_input.name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    response = httpx.post(f"{container.base_url}/v2/models/{MODEL}/infer", json=request, timeout=10)
    assert response.status_code == 200, response.text
    return {out["name"]: np.asarray(out["data"]).reshape(out["shape"]) for out in response.json()["outputs"]}


def in_process_session(repository: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_file(repository)), providers=["CPUExecutionProvider"])


def assert_same_as_in_process(answered: dict[str, np.ndarray], session: ort.InferenceSession, x: np.ndarray) -> None:
    """The container's outputs equal onnxruntime's in this process for the same model and inputs."""
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x}), strict=True))
    assert answered.keys() == expected.keys()
    for name, values in expected.items():
        np.testing.assert_allclose(answered[name], values, rtol=1e-5, atol=1e-6, err_msg=name)


def assert_answers_like_onnxruntime(container: podman.Container, repository: Path) -> None:
    session, x = in_process_session(repository), digit_images(8)
    assert_same_as_in_process(infer_in_container(container, session, x), session, x)


def test_mounted_repository_answers_like_onnxruntime_in_process(server: podman.Container, digits_repository: Path) -> None:
    assert_answers_like_onnxruntime(server, digits_repository)


def test_server_is_pid_1_and_not_root(server: podman.Container) -> None:
    """Exec form: lutnet itself is PID 1 (so SIGTERM reaches it), running under a non-root user."""
    command = server.exec("cat", "/proc/1/cmdline").split("\0")
    assert command[0].endswith("python3") and command[1].endswith("/lutnet") and command[2] == "serve", command
    uids = next(line for line in server.exec("cat", "/proc/1/status").splitlines() if line.startswith("Uid:"))
    assert all(int(uid) != 0 for uid in uids.split()[1:]), uids


def test_server_runs_with_onnxruntime_telemetry_off(server: podman.Container) -> None:
    """The image's environment (PID 1's, as the server started) switches off onnxruntime's OneDS telemetry."""
    environment = server.exec("cat", "/proc/1/environ").split("\0")
    assert "ORT_DISABLE_TELEMETRY=1" in environment, [entry for entry in environment if "TELEMETRY" in entry]


def test_image_has_no_torch_onnx_or_compilers(server: podman.Container) -> None:
    probe = (
        "import importlib.util, shutil\n"
        "print(*[m for m in ('torch', 'onnx', 'sklearn', 'matplotlib', 'training', 'export', 'service') if importlib.util.find_spec(m)], sep=',')\n"
        "print(*[m for m in ('onnxruntime', 'fastapi', 'lutnet.service') if importlib.util.find_spec(m)], sep=',')\n"
        "print(*[c for c in ('gcc', 'cc', 'c++', 'make') if shutil.which(c)], sep=',')\n"
    )
    absent, present, compilers = server.exec("python3", "-c", probe).split("\n")[:3]
    assert absent == "", f"training or export dependencies in the serving image: {absent}"
    assert present == "onnxruntime,fastapi,lutnet.service"
    assert compilers == "", f"compilers in the serving image: {compilers}"


def test_image_healthcheck_passes(server: podman.Container) -> None:
    healthcheck = podman.podman("healthcheck", "run", server.name, check=False)
    assert healthcheck.returncode == 0, healthcheck.stdout + healthcheck.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_in_flight_requests_and_exits_cleanly(runtime_image: str, digits_repository: Path, workers: int) -> None:
    """`podman stop` (SIGTERM, SIGKILL after the grace period) as Kubernetes does it: a request still in flight
    (held in the batching queue for HOLD_S) is answered, then every server process ends with exit code 0."""
    environment = {
        "LUTNET_SHUTDOWN_GRACE_S": "10",
        "LUTNET_WORKERS": str(workers),
        "LUTNET_BATCHING": "true",
        "LUTNET_MAX_QUEUE_DELAY_US": str(int(HOLD_S * 1e6)),
    }
    session, x = in_process_session(digits_repository), digit_images(1)
    with podman.run_container(runtime_image, "lutnet-test-sigterm", volumes=[(digits_repository, "/models")], environment=environment) as server:
        server.wait_ready()
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(infer_in_container, server, session, x)
            time.sleep(HOLD_S / 3)  # long enough to reach the queue over loopback, well before its batch runs
            exit_code, seconds = server.stop(GRACE_S)
            answered = in_flight.result()
        logs = server.logs()
    assert exit_code == 0, f"exit code {exit_code} after SIGTERM (137 means it was killed):\n{logs}"
    assert seconds < GRACE_S, f"took {seconds:.1f} s, the grace period is {GRACE_S} s"
    assert_same_as_in_process(answered, session, x)
    assert logs.count("Application shutdown complete") == workers, logs


def test_image_is_smaller_than_400_mb(runtime_image: str, demo_image: str, image_sizes: dict[str, int]) -> None:
    for tag in (runtime_image, demo_image):
        image_sizes[tag] = podman.image_size_bytes(tag)
    assert image_sizes[runtime_image] < MAX_IMAGE_BYTES, f"{image_sizes[runtime_image] / 1e6:.0f} MB"


def test_demo_image_answers_with_nothing_mounted(demo_image: str, digits_repository: Path) -> None:
    with podman.run_container(demo_image, "lutnet-test-demo") as demo:
        demo.wait_ready()
        assert_answers_like_onnxruntime(demo, digits_repository)


def test_dockerignore_keeps_runs_venvs_caches_and_tests_out(podman_available: None, tmp_path: Path) -> None:
    """Whatever the checkout holds besides the package sources never reaches the builder."""
    context = podman.stage_context(tmp_path / "context")
    for junk in ("runs/digits/config.json", ".venv/bin/python", "lutnet/__pycache__/cli.cpython-311.pyc", ".git/HEAD", ".ruff_cache/x"):
        (context / junk).parent.mkdir(parents=True, exist_ok=True)
        (context / junk).write_text("junk")
    probe_file = tmp_path / "Containerfile"
    probe_file.write_text(f"FROM {podman.base_image()}\nCOPY . /context\n")
    podman.podman("build", "--pull=never", "--isolation", "chroot", "--tag", "localhost/lutnet-test:context", "--file", str(probe_file), str(context))
    sent = podman.podman("run", "--rm", *podman.ULIMITS, "localhost/lutnet-test:context", "find", "/context", "-type", "f").stdout.split()
    sent = {name.removeprefix("/context/") for name in sent}
    assert {"pyproject.toml", "README.md", "lutnet/cli.py", "service/settings.py"} <= sent
    assert not [name for name in sent if name.split("/")[0] in ("runs", ".venv", ".git", ".ruff_cache", "tests", "benchmarks", "deploy")]
    assert not [name for name in sent if "__pycache__" in name]
