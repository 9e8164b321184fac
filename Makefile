# `make test` and `make demo` work on a fresh machine: they build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARCH   := $(shell uname -m)
# torch from this machine's disk (pip finds it there); aarch64 has its own CPU build.
ifeq ($(ARCH),aarch64)
TORCH  := torch==2.9.1 torchvision==0.24.1
else
TORCH  := torch==2.14.1 torchvision==0.29.1
endif

# The page's browser tests drive Debian's chromium with Playwright (a pip package, in the test
# extra); Playwright's own browser download is never used.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser redis labelstudio lint test test-heavy test-fast test-browser test-labelstudio demo bench clean

setup: $(STAMP)

browser:
	test -x $(CHROMIUM) || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	# Meta's sam2 ships as source only: build it against the torch above, without its CUDA kernels
	$(BIN)/python -m pip install -q setuptools wheel
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q --no-build-isolation 'sam2>=1.1'
	$(BIN)/python -m pip install -q -e '.[test]'
	# Meta's sam3 (SAM 3): its pins would downgrade numpy/tqdm/typing_extensions and keep
	# huggingface-hub < 2; what it imports is in pyproject.toml
	$(BIN)/python -m pip install -q --no-deps 'sam3>=0.1.4'
	# Roboflow's client, for the compatibility tests; its pins would downgrade supervision/opencv
	$(BIN)/python -m pip install -q --no-deps 'inference-sdk>=1.8'
	# Label Studio's SDK (label configs, brush RLE) for /labelstudio; its pins would downgrade numpy
	# and add opencv-python-headless beside opencv-python: what it imports is in pyproject.toml
	$(BIN)/python -m pip install -q --no-deps 'label-studio-sdk>=2.1'
	touch $@

# Label Studio itself (a Django app with pins of its own) in a venv apart, for the tests that
# connect dtseg serve to a real Label Studio (tests/server/routes/labelstudio/test_live.py)
LS_VENV  := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed
labelstudio: $(LS_STAMP)

$(LS_STAMP): | $(STAMP)
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q 'label-studio>=1.23,<2'
	# its database migrated once (~25 CPU-seconds); each test starts Label Studio on a copy
	$(BIN)/python -m tests.server.routes.labelstudio.label_studio
	touch $@

# the cache tests run a real redis-server (Debian's package)
redis:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# ruff (lint rules in pyproject.toml) over the tree, then mypy over dtseg/ and plugins/ (its cache in
# .mypy_cache: a first run reads torch's types, ~1 min; later runs take seconds). Both run offline.
lint: setup  ## the linter and the type checker (also part of test)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint browser redis labelstudio  ## lint, then the whole suite; the slowest 20 tests listed at the end
	DTSEG_TESTS_COMPLETE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not heavy" --durations=20

test-heavy: setup  ## the full-size SAM 3 cases (minutes each on a 2-core CPU)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m heavy

test-fast: setup browser redis  ## skip the vit_b-sized cases
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not heavy"

test-browser: setup browser  ## the page in headless chromium (also part of test)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m browser

test-labelstudio: setup labelstudio  ## dtseg serve as the ML backend of a real Label Studio (also part of test)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m labelstudio

# The README's picture of the page, taken by the browser tests.
docs/img/page.png: setup browser
	DTSEG_README_SCREENSHOT=$(CURDIR)/$@ $(BIN)/python -m pytest -q -p no:cacheprovider -m browser -k pipeline

# The README's picture of Label Studio's page with a mask from a click, taken by the live test.
docs/img/labelstudio.png: setup browser labelstudio
	DTSEG_LABELSTUDIO_SCREENSHOT=$(CURDIR)/$@ $(BIN)/python -m pytest -q -p no:cacheprovider -m labelstudio -k page

# The default pipeline (yolo boxes -> SAM vit_b -> annotated PNG + JSON) on ultralytics' bus.jpg.
# Offline, missing weights are replaced by random ones, loudly labelled (DEMO_ARGS to change).
BUS       = $(shell $(BIN)/python -c 'from ultralytics.utils import ASSETS; print(ASSETS / "bus.jpg")' 2>/dev/null)
DEMO_ARGS ?= --allow-random
demo: setup
	$(BIN)/dtseg segment "$(BUS)" --config configs/default.yaml --out out $(DEMO_ARGS)

bench: setup redis
	$(BIN)/python bench/models.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/encoder.py
	$(BIN)/python bench/decoder.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/video.py --modes 2

clean:
	rm -rf $(VENV) $(LS_VENV) out build *.egg-info .pytest_cache .mypy_cache .ruff_cache
