# The two commands a newcomer needs (see README):  make run  |  make test
# Each creates .venv in the repo root if missing and installs the project into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.prunelab-installed
MODEL  ?= mnist-resnet
PORT   ?= 8501
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test browser lint

setup: $(STAMP)

# torch is pinned here as well as in pyproject.toml: 2.13.0 is a CPU wheel; anything looser can pull
# a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,ray]"
	touch $(STAMP)

run: setup
	$(BIN)/prunelab dashboard --model $(MODEL) --port $(PORT)

# The browser test drives Debian's chromium through playwright (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser test"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: setup
	$(BIN)/ruff check .

# The real-browser tests run first, in a pytest process of their own: a browser journey shares this 2-core
# machine with its Streamlit server, and threads left running by hundreds of in-process tests starve it.
# The rest run in two processes (pytest-xdist), one per core: each test runs torch on one thread
# (tests/conftest.py), and a file's tests stay in one process (--dist loadfile) to share its loaded models.
# Processes those tests start (`prunelab` runs, job workers, servers) inherit OMP_NUM_THREADS=1: at torch's default
# of 2 threads they spun against the other worker; tests/test_cli_user_models.py (5 real CLI runs) took 169 s
# wall / 135 s CPU without it and 140 s / 83 s with it (loaded machine). Production defaults are unchanged.
test: setup browser lint
	$(BIN)/python -m pytest tests/e2e
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --ignore=tests/e2e
