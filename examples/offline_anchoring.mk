# Offline partition-function anchoring (DISA-style) with its two ablations on the SAME samples:
#   tb        trajectory balance against the frozen, importance-sampled log Z
#   tb-learned  the online-coupled ablation: log Z learned jointly with the policy
#   sft       the distillation baseline: SFT on each prompt's best sample
#
#   make -f examples/offline_anchoring.mk                       # small defaults, embedded model
#   make -f examples/offline_anchoring.mk MODEL=./qwen LIMIT=2000 N=16 BETA=2 EVAL_LIMIT=500 EVAL_N=8

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= runs/offline-anchoring
TASK ?= arith
LIMIT ?= 16
N ?= 8
TOKENS ?= 128
REWARD ?= math:graded
BETA ?= 4
BOOTSTRAP ?= 200
LR ?= 3e-4
EPOCHS ?= 1
BATCH ?= 8
EVAL_LIMIT ?= 16
EVAL_N ?= 4
EVAL_REWARD ?= math
SEED ?= 0

RUNS := tb tb-learned sft
EVALS := $(OUT)/eval-base.parquet $(RUNS:%=$(OUT)/eval-%.parquet)
COMMON = --model $(MODEL) --samples $(OUT)/samples.parquet --scores $(OUT)/scores.parquet \
	--lr $(LR) --epochs $(EPOCHS) --batch-size $(BATCH) --seed $(SEED)
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split test --limit $(EVAL_LIMIT) --n $(EVAL_N) \
	--max-new-tokens $(TOKENS) --reward $(EVAL_REWARD) --seed $(SEED)

.PHONY: all clean
all: $(OUT)/report.html
	$(ISWT) evaluate --compare $(EVALS)

$(OUT)/samples.parquet:
	$(ISWT) sample --model $(MODEL) --task $(TASK) --split train --limit $(LIMIT) --n $(N) \
		--max-new-tokens $(TOKENS) --seed $(SEED) --out $@

$(OUT)/scores.parquet: $(OUT)/samples.parquet
	$(ISWT) score --samples $< --reward $(REWARD) --out $@

$(OUT)/z.parquet: $(OUT)/samples.parquet $(OUT)/scores.parquet
	$(ISWT) estimate-z --proposal $(OUT)/samples.parquet --scores $(OUT)/scores.parquet --beta $(BETA) \
		--bootstrap $(BOOTSTRAP) --seed $(SEED) --out $@ --plot $(OUT)/z.png

$(OUT)/tb/manifest.json: $(OUT)/z.parquet
	$(ISWT) train $(COMMON) --loss tb --z $< --beta $(BETA) --out $(OUT)/tb

$(OUT)/tb-learned/manifest.json: $(OUT)/scores.parquet
	$(ISWT) train $(COMMON) --loss tb --z-mode learned --beta $(BETA) --out $(OUT)/tb-learned

$(OUT)/sft/manifest.json: $(OUT)/scores.parquet
	$(ISWT) train $(COMMON) --loss sft --sft-select best --out $(OUT)/sft

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-%.parquet: $(OUT)/%/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/$* --out $@

$(OUT)/report.html: $(EVALS)
	$(ISWT) report $(OUT) --out $@

clean:
	rm -rf $(OUT)
