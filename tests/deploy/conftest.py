"""Fixtures of the deployment checks (helpers in deploy_helpers.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy_helpers import K8S, KUSTOMIZATIONS, kustomize_command


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory) -> Path:
    """A copy of deploy/k8s with secrets.env made from secrets.env.example, as the docs say."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    for example in tree.rglob("secrets.env.example"):
        shutil.copy(example, example.with_name("secrets.env"))
    return tree


@pytest.fixture(scope="session")
def rendered(k8s_tree) -> dict[str, list[dict]]:
    """`kustomize build` of each overlay and of deps: {path: [objects]}."""
    cmd = kustomize_command()
    out = {}
    for name in KUSTOMIZATIONS:
        proc = subprocess.run([*cmd, str(k8s_tree / name)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"kustomize build {name} failed:\n{proc.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return out
