# Offline anchoring on code: HumanEval completions rewarded by running their tests in the sandbox.
# HumanEval has no held-out split: this trains on the first LIMIT problems and evaluates on the
# EVAL_LIMIT first ones, so the evaluation overlaps training; use your own split via --prompts FILE.
#
#   make -f examples/humaneval.mk
#   make -f examples/humaneval.mk MODEL=./qwen-coder LIMIT=164 N=16 TOKENS=512 EVAL_N=10

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= runs/humaneval
LIMIT ?= 8
N ?= 4
TOKENS ?= 192
BETA ?= 2
LR ?= 3e-4
BATCH ?= 4
EVAL_LIMIT ?= 8
EVAL_N ?= 4
WORKERS ?= 2

.PHONY: all
all: $(OUT)/report.html
	$(ISWT) evaluate --compare $(OUT)/eval-base.parquet $(OUT)/eval-tb.parquet

$(OUT)/samples.parquet:
	$(ISWT) sample --model $(MODEL) --task humaneval --limit $(LIMIT) --n $(N) --max-new-tokens $(TOKENS) --out $@

$(OUT)/scores.parquet: $(OUT)/samples.parquet
	$(ISWT) score --samples $< --reward code --workers $(WORKERS) --out $@

$(OUT)/z.parquet: $(OUT)/scores.parquet
	$(ISWT) estimate-z --proposal $(OUT)/samples.parquet --scores $< --beta $(BETA) --out $@

$(OUT)/tb/manifest.json: $(OUT)/z.parquet
	$(ISWT) train --model $(MODEL) --samples $(OUT)/samples.parquet --scores $(OUT)/scores.parquet \
		--loss tb --z $< --beta $(BETA) --lr $(LR) --batch-size $(BATCH) --out $(OUT)/tb

EVAL_FLAGS = --model $(MODEL) --task humaneval --limit $(EVAL_LIMIT) --n $(EVAL_N) --max-new-tokens $(TOKENS) \
	--reward code --workers $(WORKERS)

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-tb.parquet: $(OUT)/tb/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/tb --out $@

$(OUT)/report.html: $(OUT)/eval-base.parquet $(OUT)/eval-tb.parquet
	$(ISWT) report $(OUT) --out $@
