"""docker-compose.yml validates against the compose specification and runs the whole stack."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re

import jsonschema
import pytest
import yaml

from deploy_helpers import ROOT
from lookalike.config import Settings
from lookalike.queue import QUEUES, time_limit

STAGE_OF_QUEUE = {q: s for s, q in QUEUES.items()}


def compose_schema() -> dict:
    # The compose-spec JSON schema as vendored by check-jsonschema (Apache-2.0, from
    # github.com/compose-spec/compose-spec schema/compose-spec.json); dev extra of pyproject.
    path = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def seconds(value: str) -> int:
    m = re.fullmatch(r"(\d+)s", value)
    assert m, value
    return int(m.group(1))


def test_compose_file_validates_against_the_compose_spec(compose):
    schema = compose_schema()
    jsonschema.validate(compose, schema)
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["restartt"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_stack_services_volumes_and_gpu_profile(compose):
    services = compose["services"]
    assert {"redis", "postgres", "minio", "minio-bucket", "migrate", "api", "flower"} <= set(services)
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert "mc mb --ignore-existing" in services["minio-bucket"]["command"][0]
    assert services["migrate"]["command"] == ["migrate"]
    assert set(compose["volumes"]) >= {"redis", "postgres", "minio", "models"}
    for name, service in services.items():  # named volumes only, no host folders
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], f"{name}: {volume}"
    settings = Settings()
    for queue in QUEUES.values():
        workers = [n for n, s in services.items()
                   if s.get("command", [])[:3] == ["worker", "--queue", queue] and not s.get("profiles")]
        assert len(workers) == 1, f"queue {queue} needs one worker service"
        service = services[workers[0]]
        assert seconds(service["stop_grace_period"]) > time_limit(settings, STAGE_OF_QUEUE[queue])
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert sum("--beat" in s.get("command", []) for s in services.values()) == 1
    gpu = services["encoder-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["command"] == ["worker", "--queue", "encoder"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["build"]["dockerfile"] == "deploy/docker/Dockerfile.gpu"
    assert seconds(services["renderer-gpu"]["stop_grace_period"]) > settings.renderer_time_limit_s
