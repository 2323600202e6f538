"""The Kubernetes example agrees with the image, the server's settings and the running container."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from lutnet.service.settings import Settings
from tests.container import podman

yaml = pytest.importorskip("yaml", reason="the Kubernetes example is read with PyYAML (dev extra: pyyaml)")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = ROOT / "deploy" / "kubernetes" / "lutnet.yaml"


def manifests() -> dict[str, dict[str, Any]]:
    """The example's objects by kind."""
    return {document["kind"]: document for document in yaml.safe_load_all(MANIFESTS.read_text())}


def deployment_container() -> dict[str, Any]:
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def container_environment() -> dict[str, str]:
    """The container's variables with literal values (those from a Secret are left out)."""
    return {variable["name"]: variable["value"] for variable in deployment_container()["env"] if "value" in variable}


def dockerfile_instruction(name: str) -> str:
    (argument,) = re.findall(rf"^{name}\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return argument


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_threads_fit_the_cpu_limit() -> None:
    """Server processes x onnxruntime threads never exceed the CPUs the pod may use (else it is throttled)."""
    env = container_environment()
    limit = cpus(deployment_container()["resources"]["limits"]["cpu"])
    threads = int(env["LUTNET_WORKERS"]) * int(env["LUTNET_INTRA_OP_THREADS"])
    assert 0 < threads <= limit
    assert env["OMP_NUM_THREADS"] == env["LUTNET_INTRA_OP_THREADS"]


def test_environment_names_real_settings() -> None:
    settings = Settings(**{name.removeprefix("LUTNET_").lower(): value for name, value in container_environment().items() if name.startswith("LUTNET_")})
    assert settings.workers >= 1


def test_the_api_token_comes_from_a_secret() -> None:
    """Repository control is on only with a token, and the token lives in a Secret, not in the manifest."""
    (token,) = [variable for variable in deployment_container()["env"] if variable["name"] == "LUTNET_API_TOKEN"]
    assert "value" not in token
    reference = token["valueFrom"]["secretKeyRef"]
    assert reference["name"] and reference["key"]
    assert "api_token" in Settings.model_fields


def test_termination_grace_outlasts_the_drain() -> None:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    pause = int(deployment_container()["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(container_environment()["LUTNET_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > pause + drain


def test_pod_matches_the_image() -> None:
    """The pod runs as the image's user, on the port it exposes, reads models where the image looks for them."""
    container = deployment_container()
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    uid, gid = dockerfile_instruction("USER").split(":")
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
    assert container["ports"][0]["containerPort"] == int(dockerfile_instruction("EXPOSE"))
    repository = re.search(r"LUTNET_REPOSITORY=(\S+)", DOCKERFILE.read_text()).group(1)
    assert repository in {mount["mountPath"] for mount in container["volumeMounts"]}


def test_service_and_autoscaler_select_the_deployment() -> None:
    objects = manifests()
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == deployment_container()["ports"][0]["name"]
    assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]


def test_pod_is_hardened_as_the_container_tests_run_it() -> None:
    """The pod's restrictions are the ones tests/container/podman.py runs every container test under."""
    container = deployment_container()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and "--read-only" in podman.HARDENING
    assert security["capabilities"]["drop"] == ["ALL"] and "--cap-drop" in podman.HARDENING
    assert security["allowPrivilegeEscalation"] is False and "no-new-privileges" in podman.HARDENING
    assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]} and "/tmp" in podman.HARDENING


@pytest.mark.container
def test_probe_routes_answer_in_the_container(server: podman.Container) -> None:
    """The health routes the Kubernetes probes ask for exist and pass in the running image."""
    container = deployment_container()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert httpx.get(server.base_url + container[probe]["httpGet"]["path"], timeout=5).status_code == 200, probe
