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

.PHONY: setup redis test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# the cache tests run a real redis-server (Debian's package)
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; } \
	  || { sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; }

test: setup redis
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup redis  ## skip the vit_b-sized cases
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# The default pipeline (yolo boxes -> SAM vit_b -> annotated PNG + JSON) on ultralytics' bus.jpg.
# Offline, missing weights are replaced by random ones, loudly labelled (DEMO_ARGS to change).
BUS       = $(shell $(BIN)/python -c 'from ultralytics.utils import ASSETS; print(ASSETS / "bus.jpg")' 2>/dev/null)
DEMO_ARGS ?= --allow-random
demo: setup
	$(BIN)/dtseg segment "$(BUS)" --config configs/default.yaml --out out $(DEMO_ARGS)

bench: setup redis
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/encoder.py
	$(BIN)/python bench/decoder.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/cache.py

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache
