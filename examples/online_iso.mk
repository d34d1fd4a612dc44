# Online iterative ISO: T rounds of sample (from the current policy) -> score -> weight-pairs -> train,
# each round starting from the previous round's adapter (its own reference for the DPO-style loss).
# iswt skips every stage whose output is already up to date, so an interrupted run just continues.
#
#   make -f examples/online_iso.mk T=3
#   make -f examples/online_iso.mk MODEL=./my-sft-model T=4 LIMIT=2000 N=8

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= runs/online-iso
TASK ?= arith
T ?= 2
LIMIT ?= 12
N ?= 4
TOKENS ?= 128
REWARD ?= math:graded
GAMMA ?= 0.5
DPO_BETA ?= 0.1
LR ?= 3e-4
BATCH ?= 8
EVAL_LIMIT ?= 16
EVAL_N ?= 4

.PHONY: all rounds
all: rounds
	$(ISWT) evaluate --model $(MODEL) --task $(TASK) --split test --limit $(EVAL_LIMIT) --n $(EVAL_N) \
		--max-new-tokens $(TOKENS) --reward math --adapter $(OUT)/round$(T)/run --out $(OUT)/eval-round$(T).parquet
	$(ISWT) report $(OUT) --out $(OUT)/report.html

rounds:
	set -e; adapter=""; \
	for t in $$(seq 1 $(T)); do \
		d=$(OUT)/round$$t; \
		$(ISWT) sample --model $(MODEL) $$adapter --task $(TASK) --split train --limit $(LIMIT) --n $(N) \
			--max-new-tokens $(TOKENS) --seed $$t --out $$d/samples.parquet; \
		$(ISWT) score --samples $$d/samples.parquet --reward $(REWARD) --out $$d/scores.parquet; \
		$(ISWT) weight-pairs --samples $$d/samples.parquet --scores $$d/scores.parquet --method iso \
			--gamma $(GAMMA) --seed $$t --out $$d/pairs.parquet; \
		$(ISWT) train --model $(MODEL) $$adapter --samples $$d/samples.parquet --scores $$d/scores.parquet \
			--loss sigmoid --pairs $$d/pairs.parquet --beta $(DPO_BETA) --lr $(LR) --batch-size $(BATCH) \
			--seed $$t --out $$d/run; \
		adapter="--adapter $$d/run"; \
	done
