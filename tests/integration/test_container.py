"""The Dockerfile and compose file, checked statically (tests/integration/test_container_run.py
builds and runs the image)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_container_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_image_installs_dependencies_offline_from_the_prepared_wheels() -> None:
    install = re.search(r"pip install ([^\n]+\\\n[^\n]+)", DOCKERFILE)
    assert install is not None
    assert "--no-index" in install.group(1) and "--find-links /tmp/wheels" in install.group(1)


def test_dockerfile_copies_only_what_the_build_context_lets_through() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE, flags=re.MULTILINE):
        *sources, _ = line.split()
        for source in sources:
            assert any(source.rstrip("/") == entry for entry in allowed), source


def test_no_credentials_are_baked_into_the_image() -> None:
    assert not re.search(r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)", DOCKERFILE)


def test_entrypoint_dispatches_to_real_job_modules() -> None:
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    jobs = re.search(r"^\s*([a-z|]+)\)\s*$", script, flags=re.MULTILINE)
    assert jobs is not None
    for job in jobs.group(1).split("|"):
        assert (ROOT / "jobs" / f"{job}.py").is_file(), job


def test_entrypoint_rejects_unknown_jobs() -> None:
    done = subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "vaildate"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "unknown job 'vaildate'" in done.stderr


def test_compose_runs_the_jobs_against_minio_only() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"minio", "minio-init", "validate"} <= set(services)
    assert services["validate"]["command"][0] == "validate"
    assert all("build" not in service for service in services.values()), "build with `make image`"
    assert (
        services["generate"]["command"][:1] == ["generate"] and "--upload" in services["generate"]["command"]
    )
    env = services["validate"]["environment"]
    assert env["ECOM_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert all(port.startswith("127.0.0.1:") for port in services["minio"]["ports"])
