"""The cloud configurations in cluster/ stay valid and consistent: no cluster, no network, a second or so.

* cluster/aws.yaml passes Ray's own cluster-launcher validation (defaults filled in by `prepare_config`, then
  `validate_config`, the steps `ray up` takes) and keeps the shape the comments promise: a head with no CPUs,
  autoscaling GPU workers, the sweeplab image, token auth on every node.
* cluster/kuberay/*.yaml: the KubeRay fields sweeplab relies on (head without CPUs, an autoscaled GPU group,
  the token secret and the results volume on every Ray container, the Ray version of the image), the RayJob's
  cluster equal to the RayCluster, and an entrypoint the `sweeplab` CLI accepts for a spec that exists.
* cluster/Dockerfile builds on the Ray version the manifests name.

Run: python -m pytest -q tests/test_cluster_configs.py
"""
from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).parents[1]
CLUSTER = ROOT / "cluster"
SECRET = "sweeplab-ray-token"
SECRET_KEY = "auth_token"  # the key KubeRay reads from authOptions.secretName
PVC = "sweeplab-results"
MOUNT = "/mnt/sweeps"


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


# --- cluster/aws.yaml ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load((CLUSTER / "aws.yaml").read_text())


def test_aws_config_passes_ray_validation(aws):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # `ray up` fills in the provider's defaults before validating; validate_config alone rejects a raw file
    # (it wants fields such as cluster_synced_files that only the defaults supply).
    validate_config(prepare_config(copy.deepcopy(aws)))


def test_aws_head_runs_no_trials_and_gpu_workers_autoscale(aws):
    assert aws["cluster_name"] == "sweeplab" and aws["provider"]["type"] == "aws"
    types = aws["available_node_types"]
    assert types[aws["head_node_type"]]["resources"]["CPU"] == 0
    assert any("RAY_worker_maximum_startup_concurrency=8" in c for c in aws["head_start_ray_commands"])
    gpu = {name: t for name, t in types.items()
           if name != aws["head_node_type"] and re.match(r"(g|p)\d", t["node_config"]["InstanceType"])}
    assert gpu, "no worker type with a GPU instance"
    assert any(t["max_workers"] > t.get("min_workers", 0) for t in gpu.values())
    assert sum(t["max_workers"] for t in gpu.values()) <= aws["max_workers"]
    assert aws["idle_timeout_minutes"] > 0


def test_aws_image_and_token(aws):
    docker = aws["docker"]
    assert docker["image"].startswith("sweeplab")
    assert "--gpus all" in docker["worker_run_options"]
    # The token made by `ray get-auth-token --generate` reaches every node at Ray's default path...
    assert aws["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # ...and every `ray start` runs with token auth on.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in aws[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    assert any("--head" in c for c in aws["head_start_ray_commands"])


# --- cluster/kuberay/ ----------------------------------------------------------------------------------------


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / "kuberay" / name).read_text()) if d]


@pytest.fixture(scope="module")
def raycluster() -> dict:
    (doc,) = [d for d in _docs("raycluster.yaml") if d["kind"] == "RayCluster"]
    return doc


@pytest.fixture(scope="module")
def rayjob() -> dict:
    (doc,) = _docs("rayjob.yaml")
    return doc


def _pods(spec: dict) -> list[dict]:
    """Pod specs of the head and of every worker group."""
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


def _has_token(container: dict) -> bool:
    env = {e["name"]: e for e in container.get("env", [])}
    ref = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
    return env.get("RAY_AUTH_MODE", {}).get("value") == "token" and ref == {"name": SECRET, "key": SECRET_KEY}


def _check_cluster_spec(spec: dict) -> None:
    assert _major_minor(spec["rayVersion"]) == _major_minor(ray.__version__)
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"] == {"mode": "token", "secretName": SECRET}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    # with no CPUs Ray would start the head's worker processes (the trials' drivers) one at a time
    head_env = {e["name"]: e for e in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert int(head_env["RAY_worker_maximum_startup_concurrency"]["value"]) > 1

    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if any(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1
                         for c in g["template"]["spec"]["containers"])]
    assert [g["groupName"] for g in gpu_groups] == ["gpu-workers"]
    (gpu,) = gpu_groups
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] == 8
    assert any(t.get("key") == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])
    for c in gpu["template"]["spec"]["containers"]:
        res = c["resources"]
        assert {"cpu", "memory"} <= res["requests"].keys() and {"cpu", "memory"} <= res["limits"].keys()

    for pod in _pods(spec):
        volumes = {v["name"]: v for v in pod["volumes"]}
        ray_container = pod["containers"][0]  # KubeRay treats the first container as Ray's
        assert ray_container["image"].startswith("sweeplab")
        assert _has_token(ray_container), ray_container["name"]
        mounts = [m for m in ray_container["volumeMounts"] if m["mountPath"] == MOUNT]
        assert mounts, f"{ray_container['name']} does not mount {MOUNT}"
        assert volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"] == PVC


def test_raycluster_manifest(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1"
    _check_cluster_spec(raycluster["spec"])


def test_results_volume_is_shared():
    (pvc,) = [d for d in _docs("raycluster.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["apiVersion"] == "v1" and pvc["metadata"]["name"] == PVC
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # rayjob.yaml's usage applies only this document, selected by this label.
    assert pvc["metadata"]["labels"]["app.kubernetes.io/component"] == "results"


def test_rayjob_manifest(rayjob, raycluster):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    _check_cluster_spec(spec["rayClusterSpec"])
    assert spec["rayClusterSpec"] == raycluster["spec"], "rayjob.yaml's cluster drifted from raycluster.yaml"
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    assert all(_has_token(c) for c in submitter["containers"])


def test_rayjob_entrypoint_is_a_valid_sweeplab_run(rayjob):
    from sweeplab import cli
    from sweeplab.spec import load

    entrypoint = rayjob["spec"]["entrypoint"]
    assert entrypoint.startswith("sweeplab run ")
    args = cli._parser().parse_args(shlex.split(entrypoint)[1:])
    assert args.command == "run" and args.address == "auto"
    assert [f"storage={MOUNT}"] in args.overrides
    # The image has the repository at /app (cluster/Dockerfile), so /app/sweeps/X is sweeps/X here.
    spec_path = Path(args.spec)
    assert spec_path.parent == Path("/app/sweeps")
    spec = load(ROOT / "sweeps" / spec_path.name)
    # One trial's Train worker fits one pod of the GPU group.
    (gpu,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert spec.cpus <= float(limits["cpu"]) and spec.gpus <= float(limits["nvidia.com/gpu"])


# --- cluster/Dockerfile --------------------------------------------------------------------------------------


def test_dockerfile_matches_manifests(raycluster):
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+rayproject/ray:(\S+)-py\d+-gpu\s*$", dockerfile, re.M)
    assert base == raycluster["spec"]["rayVersion"]
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M)
    assert re.search(r"^RUN pip install --no-cache-dir /app$", dockerfile, re.M)
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "results"} <= ignored
