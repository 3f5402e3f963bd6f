# Two set-up commands: `make demo` (main job on the embedded corpus) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# A CPU torch wheel may lie on this disk; use it when present (no multi-GB CUDA download).
WHEELS := $(wildcard /opt/wheels)
FIND_LINKS := $(if $(WHEELS),--find-links $(WHEELS),)
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-all bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(FIND_LINKS) "torch==2.13.0"
	$(PIP) install -q $(FIND_LINKS) -e ".[dev,minilm]"
	touch $@

venv: $(VENV)/.installed

# One torch thread: for the demo's small models it is ~4x faster on 2 cores than torch's default.
demo: venv
	OMP_NUM_THREADS=1 $(VENV)/bin/streamguard demo --output-dir outputs/demo

test: venv
	$(PY) -m pytest -m "not slow" -q

test-all: venv
	$(PY) -m pytest -q

clean:
	rm -rf outputs .pytest_cache
