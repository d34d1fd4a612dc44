# Online iterative ISO: T rounds of sample (from the current policy) -> score -> weight-pairs -> train,
# each round starting from the previous round's adapter (its own reference for the DPO-style loss).
# Every step is a file target and every iswt stage also skips itself when its output is up to date,
# so an interrupted run just continues, and raising T adds rounds on top of the finished ones.
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
EPOCHS ?= 1
BATCH ?= 8
EVAL_LIMIT ?= 16
EVAL_N ?= 4
EVAL_REWARD ?= math
SEED ?= 0

ROUNDS := $(shell seq 1 $(T))
LAST := $(OUT)/round$(T)/run
EVALS := $(OUT)/eval-base.parquet $(OUT)/eval-round$(T).parquet
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split test --limit $(EVAL_LIMIT) --n $(EVAL_N) \
	--max-new-tokens $(TOKENS) --reward $(EVAL_REWARD) --seed $(SEED)

.PHONY: all clean
all: $(OUT)/report.html
	$(ISWT) evaluate --compare $(EVALS)

# Round $(1)'s rules: $(2) is the previous round (empty for round 1, which samples from MODEL itself)
# and $(3) the round's seed, SEED + round, so that rounds draw different samples.
define ROUND
$(OUT)/round$(1)/samples.parquet: $(if $(2),$(OUT)/round$(2)/run/manifest.json)
	$$(ISWT) sample --model $$(MODEL)$(if $(2), --adapter $(OUT)/round$(2)/run) --task $$(TASK) --split train \
		--limit $$(LIMIT) --n $$(N) --max-new-tokens $$(TOKENS) --seed $(3) --out $$@

$(OUT)/round$(1)/scores.parquet: $(OUT)/round$(1)/samples.parquet
	$$(ISWT) score --samples $$< --reward $$(REWARD) --out $$@

$(OUT)/round$(1)/pairs.parquet: $(OUT)/round$(1)/samples.parquet $(OUT)/round$(1)/scores.parquet
	$$(ISWT) weight-pairs --samples $(OUT)/round$(1)/samples.parquet --scores $(OUT)/round$(1)/scores.parquet \
		--method iso --gamma $$(GAMMA) --seed $(3) --out $$@

$(OUT)/round$(1)/run/manifest.json: $(OUT)/round$(1)/pairs.parquet
	$$(ISWT) train --model $$(MODEL)$(if $(2), --adapter $(OUT)/round$(2)/run) \
		--samples $(OUT)/round$(1)/samples.parquet --scores $(OUT)/round$(1)/scores.parquet \
		--loss sigmoid --pairs $$< --beta $$(DPO_BETA) --lr $$(LR) --epochs $$(EPOCHS) --batch-size $$(BATCH) \
		--seed $(3) --out $(OUT)/round$(1)/run
endef
add = $(shell echo $$(( $(1) + $(2) )))
$(foreach t,$(ROUNDS),$(eval $(call ROUND,$(t),$(filter-out 0,$(call add,$(t),-1)),$(call add,$(SEED),$(t)))))

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-round$(T).parquet: $(LAST)/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(LAST) --out $@

$(OUT)/report.html: $(EVALS)
	$(ISWT) report $(OUT) --out $@

clean:
	rm -rf $(OUT)
