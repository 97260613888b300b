"""deploy/k8s: kustomize renders, every object validates offline, the scaling contract holds."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from deploy_helpers import K8S_VERSION, KUSTOMIZATIONS, OVERLAYS, by_kind
from lookalike.config import Settings
from lookalike.queue import QUEUES, time_limit

KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-scaledobject.schema.json").read_text())
STAGE_OF_QUEUE = {q: s for s, q in QUEUES.items()}


def validate_k8s(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_validators_are_live():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    validate_k8s(deployment)
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
                             "spec": {"scaleTargetRef": {"name": "x"},
                                      "triggers": [{"type": "redis", "metadata": {"listLenght": "5", "address": "r:6379"}}]}},
                            KEDA_SCHEMA)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_validates(name, rendered):
    objects = rendered[name]
    assert objects
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            jsonschema.validate(obj, KEDA_SCHEMA)
        else:
            validate_k8s(obj)
        assert obj["metadata"].get("namespace", "lookalike") == "lookalike"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_queue_has_a_worker_and_a_scaler(overlay, rendered):
    objects = rendered[overlay]
    deployments, scalers = by_kind(objects, "Deployment"), by_kind(objects, "ScaledObject")
    settings = Settings()
    for queue in QUEUES.values():
        workers = [d for d in deployments.values()
                   if d["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["worker", "--queue", queue]
                   and "--beat" not in d["spec"]["template"]["spec"]["containers"][0]["args"]]
        assert len(workers) == 1, f"{overlay}: queue {queue} needs exactly one autoscaled worker Deployment"
        worker = workers[0]
        name = worker["metadata"]["name"]
        scaler = [s for s in scalers.values() if s["spec"]["scaleTargetRef"]["name"] == name]
        assert len(scaler) == 1, f"{overlay}: no ScaledObject for Deployment {name}"
        (trigger,) = scaler[0]["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        pod = worker["spec"]["template"]["spec"]
        # graceful shutdown longer than the longest task of the queue (Celery warm shutdown)
        assert pod["terminationGracePeriodSeconds"] > time_limit(settings, STAGE_OF_QUEUE[queue])
        container = pod["containers"][0]
        assert {"readinessProbe", "livenessProbe"} <= set(container)
        assert {"requests", "limits"} <= set(container["resources"])
        assert pod["securityContext"]["runAsNonRoot"] is True
    scheduler = [d for d in deployments.values() if "--beat" in d["spec"]["template"]["spec"]["containers"][0]["args"]]
    assert len(scheduler) == 1 and scheduler[0]["spec"]["replicas"] == 1
    assert scheduler[0]["spec"]["strategy"]["type"] == "Recreate"
    assert not [s for s in scalers.values() if s["spec"]["scaleTargetRef"]["name"] == scheduler[0]["metadata"]["name"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_service_ingress_hpa_pdb_migrations(overlay, rendered):
    objects = rendered[overlay]
    api = by_kind(objects, "Deployment")["api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "api"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert by_kind(objects, "Service")["api"]["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    backend = by_kind(objects, "Ingress")["api"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "api"
    assert by_kind(objects, "HorizontalPodAutoscaler")["api"]["spec"]["scaleTargetRef"]["name"] == "api"
    pdbs = by_kind(objects, "PodDisruptionBudget")
    for name in ["api", *QUEUES.values()]:
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    job = by_kind(objects, "Job")["migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    for d in [*by_kind(objects, "Deployment").values(), job]:  # every pod reads the generated config
        refs = {next(iter(s.values()))["name"] for s in d["spec"]["template"]["spec"]["containers"][0]["envFrom"]}
        assert refs == set(by_kind(objects, "ConfigMap")) | set(by_kind(objects, "Secret"))


def test_gpu_overlay_schedules_the_encoder_on_gpus_and_scales_it_to_zero(rendered):
    gpu, cpu = rendered["overlays/gpu"], rendered["overlays/cpu-only"]
    pod = by_kind(gpu, "Deployment")["encoder"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].endswith("/lookalike-gpu:0.1.0")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    models = {v["name"]: v for v in pod["volumes"]}["models"]
    assert models["persistentVolumeClaim"]["claimName"] in by_kind(gpu, "PersistentVolumeClaim")
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert by_kind(gpu, "ScaledObject")["encoder"]["spec"]["minReplicaCount"] == 0
    trigger = by_kind(gpu, "ScaledObject")["encoder"]["spec"]["triggers"][0]["metadata"]
    assert (trigger["listName"], trigger["listLength"]) == ("encoder", "10")
    # every namespaced object of the overlay lands in the app's namespace (the PVC too)
    for o in gpu:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "lookalike", (o["kind"], o["metadata"]["name"])
    # the patch kept the base's probes, envFrom and warm-shutdown grace
    assert {"readinessProbe", "livenessProbe", "envFrom"} <= set(container)
    assert pod["terminationGracePeriodSeconds"] > Settings().encoder_time_limit_s
    cpu_pod = by_kind(cpu, "Deployment")["encoder"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in cpu_pod
    assert by_kind(cpu, "ScaledObject")["encoder"]["spec"]["minReplicaCount"] >= 1


def test_deps_redis_keeps_an_append_only_file_and_bucket_is_created(rendered):
    deps = rendered["deps"]
    redis = by_kind(deps, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][redis["args"].index("--appendonly") + 1] == "yes"
    assert "mc mb --ignore-existing local/lookalike" in by_kind(deps, "Job")["minio-bucket"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert set(by_kind(deps, "Service")) == {"redis", "postgres", "minio"}
