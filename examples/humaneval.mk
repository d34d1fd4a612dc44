# Offline anchoring on code: HumanEval completions rewarded by running their tests in the sandbox.
# HumanEval has no held-out split: this trains on the first LIMIT problems and evaluates on the
# EVAL_LIMIT first ones, so the evaluation overlaps training; use your own split via --prompts FILE.
# A small model may pass no test at all: every reward is then 0, estimate-z flags each prompt
# all_equal_rewards and training has nothing to learn from; raise N, TOKENS or use a stronger MODEL.
#
#   make -f examples/humaneval.mk
#   make -f examples/humaneval.mk MODEL=./qwen-coder LIMIT=164 N=16 TOKENS=512 EVAL_N=10

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= runs/humaneval
LIMIT ?= 8
N ?= 4
TOKENS ?= 192
REWARD ?= code
BETA ?= 2
LR ?= 3e-4
EPOCHS ?= 1
BATCH ?= 4
EVAL_LIMIT ?= 8
EVAL_N ?= 4
EVAL_REWARD ?= code
WORKERS ?= 2
SEED ?= 0

EVALS := $(OUT)/eval-base.parquet $(OUT)/eval-tb.parquet
EVAL_FLAGS = --model $(MODEL) --task humaneval --limit $(EVAL_LIMIT) --n $(EVAL_N) --max-new-tokens $(TOKENS) \
	--reward $(EVAL_REWARD) --workers $(WORKERS) --seed $(SEED)

.PHONY: all clean
all: $(OUT)/report.html
	$(ISWT) evaluate --compare $(EVALS)

$(OUT)/samples.parquet:
	$(ISWT) sample --model $(MODEL) --task humaneval --limit $(LIMIT) --n $(N) --max-new-tokens $(TOKENS) \
		--seed $(SEED) --out $@

$(OUT)/scores.parquet: $(OUT)/samples.parquet
	$(ISWT) score --samples $< --reward $(REWARD) --workers $(WORKERS) --out $@

$(OUT)/z.parquet: $(OUT)/samples.parquet $(OUT)/scores.parquet
	$(ISWT) estimate-z --proposal $(OUT)/samples.parquet --scores $(OUT)/scores.parquet --beta $(BETA) \
		--seed $(SEED) --out $@

$(OUT)/tb/manifest.json: $(OUT)/z.parquet
	$(ISWT) train --model $(MODEL) --samples $(OUT)/samples.parquet --scores $(OUT)/scores.parquet \
		--loss tb --z $< --beta $(BETA) --lr $(LR) --epochs $(EPOCHS) --batch-size $(BATCH) --seed $(SEED) \
		--out $(OUT)/tb

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-tb.parquet: $(OUT)/tb/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/tb --out $@

$(OUT)/report.html: $(EVALS)
	$(ISWT) report $(OUT) --out $@

clean:
	rm -rf $(OUT)
