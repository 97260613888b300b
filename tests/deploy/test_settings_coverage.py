"""Every setting the code reads is set or defaulted, in compose and in the Kubernetes manifests.

The list of settings comes from the code: the fields of ``lookalike.config.Settings`` and every
``LOOKALIKE_*`` name written in shared/ and services/; nothing here lists them by hand.
"""

from __future__ import annotations

import re
import sys

import pytest
import yaml

from deploy_helpers import OVERLAYS, ROOT, by_kind, read_env_file
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.service_config import check_service

sys.path.insert(0, str(ROOT / "deploy"))
from env_example import env_example  # noqa: E402

FIELDS = {f"LOOKALIKE_{name.upper()}": name for name in Settings.model_fields}
#: names the code reads that are not Settings fields (found by the scan below, checked there)
NAME = re.compile(r"LOOKALIKE_[A-Z0-9_]*[A-Z0-9]")


def names_in_code() -> set[str]:
    found = set()
    for folder in ("shared/lookalike", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(NAME.findall(path.read_text(encoding="utf-8")))
    return found


def test_env_example_is_generated_from_the_settings_model():
    assert (ROOT / ".env.example").read_text() == env_example(), \
        "a setting changed in lookalike/config.py: run `.venv/bin/python deploy/env_example.py > .env.example`"
    listed = set(re.findall(r"^#? ?(LOOKALIKE_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert set(FIELDS) <= listed


def test_every_name_the_code_reads_is_a_setting_or_documented():
    documented = (ROOT / ".env.example").read_text() + (ROOT / "docs" / "OPERATIONS.md").read_text()
    code = names_in_code()
    assert "LOOKALIKE_REDIS_URL" in code and len(code) > 10  # the scan sees the code
    internal = {n for n in code if n.startswith("LOOKALIKE__")}  # set by the CLI for its children
    others = code - set(FIELDS) - internal
    missing = sorted(n for n in others if n not in documented and not any(f.startswith(n) for f in FIELDS))
    assert not missing, f"read by the code but neither a Settings field nor documented: {missing}"


def interpolate(value: str, env: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default}, ${VAR:?message} substitution."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in env and (env[name] or op != ":-"):
            return env[name]
        assert op != ":?", f"${{{name}}} is required but .env.example does not set it"
        return arg
    return re.sub(r"\$\{([A-Z0-9_]+)(:-|:\?|-)?([^}]*)\}", sub, value)


def settings_from(env: dict[str, str], monkeypatch) -> Settings:
    for key in list(FIELDS):
        monkeypatch.delenv(key, raising=False)
    unknown = sorted(k for k in env if k.startswith("LOOKALIKE_") and k not in FIELDS and k != "LOOKALIKE_LOG_LEVEL")
    assert not unknown, f"not settings of lookalike/config.py (typo?): {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def assert_distributed_ready(settings: Settings, where: str) -> None:
    try:
        warnings = check_service(settings, "distributed")
    except ConfigError as exc:
        pytest.fail(f"{where}: {exc}")
    assert warnings == [], f"{where}: {warnings}"
    # the wiring that has no working default in a deployment is set explicitly
    assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.storage == "s3" and settings.s3_endpoint_url and settings.secret_key
    assert settings.api_host == "0.0.0.0" and settings.auth == "keys"


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_environment_makes_valid_distributed_settings(monkeypatch):
    dotenv = read_env_file(ROOT / ".env.example")
    lookalike = {n: s for n, s in compose_services().items() if "lookalike" in str(s.get("image", ""))}
    assert {"api", "migrate", "encoder", "matcher", "renderer", "notify", "encoder-gpu"} <= set(lookalike)
    for name, service in lookalike.items():
        assert service["env_file"][0]["path"] == ".env"
        env = {k: v for k, v in dotenv.items()}
        env.update({k: interpolate(str(v), dotenv) for k, v in service["environment"].items()})
        settings = settings_from(env, monkeypatch)
        assert_distributed_ready(settings, f"compose service {name}")
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.s3_endpoint_url == "http://minio:9000"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_environment_makes_valid_distributed_settings(overlay, rendered, monkeypatch):
    objects = rendered[overlay]
    configmaps, secrets = by_kind(objects, "ConfigMap"), by_kind(objects, "Secret")
    pods = [(n, d["spec"]["template"]["spec"]) for kind in ("Deployment", "Job")
            for n, d in by_kind(objects, kind).items()]
    assert len(pods) >= 7
    import base64

    for name, pod in pods:
        for container in pod["containers"]:
            env = {}
            for source in container["envFrom"]:
                if "configMapRef" in source:
                    env.update(configmaps[source["configMapRef"]["name"]]["data"])
                else:
                    data = secrets[source["secretRef"]["name"]]["data"]
                    env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
            env.update({e["name"]: e["value"] for e in container.get("env", [])})
            settings = settings_from(env, monkeypatch)
            assert_distributed_ready(settings, f"{overlay} {name}")
            # KEDA reads the broker's address from the same env: it must be the broker's
            host_port = settings.redis_url.split("//", 1)[1].split("/", 1)[0]
            assert env["KEDA_REDIS_ADDRESS"] == host_port
            if name == "encoder" and overlay.endswith("gpu"):
                assert settings.face_backend == "onnx" and settings.onnx_provider == "cuda"
                assert str(settings.onnx_model_dir).startswith("/models/")
