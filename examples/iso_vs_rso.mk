# Importance-sampled pairs (ISO) vs statistical rejection sampling (RSO) vs uniform weights (direct).
# RSO gets 4x the samples per prompt, as in the ISO paper's comparison; ISO and direct use N.
#
#   make -f examples/iso_vs_rso.mk
#   make -f examples/iso_vs_rso.mk MODEL=./my-sft-model LIMIT=1000 N=8 GAMMA=1 RSO_BETA=0.5

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= runs/iso-vs-rso
TASK ?= arith
LIMIT ?= 16
N ?= 4
TOKENS ?= 128
REWARD ?= math:graded
GAMMA ?= 0.5
RSO_BETA ?= 0.5
NUM_ACCEPT ?= $(N)
DPO_BETA ?= 0.1
LR ?= 3e-4
BATCH ?= 8
EVAL_LIMIT ?= 16
EVAL_N ?= 4
SEED ?= 0

N4 := $(shell echo $$(( $(N) * 4 )))
METHODS := iso rso direct
EVALS := $(OUT)/eval-base.parquet $(METHODS:%=$(OUT)/eval-%.parquet)
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split test --limit $(EVAL_LIMIT) --n $(EVAL_N) \
	--max-new-tokens $(TOKENS) --reward math --seed $(SEED)

.PHONY: all
all: $(OUT)/report.html
	$(ISWT) evaluate --compare $(EVALS)

$(OUT)/samples-n%.parquet:
	$(ISWT) sample --model $(MODEL) --task $(TASK) --split train --limit $(LIMIT) --n $* \
		--max-new-tokens $(TOKENS) --seed $(SEED) --out $@

$(OUT)/scores-n%.parquet: $(OUT)/samples-n%.parquet
	$(ISWT) score --samples $< --reward $(REWARD) --out $@

$(OUT)/pairs-iso.parquet: $(OUT)/scores-n$(N).parquet
	$(ISWT) weight-pairs --samples $(OUT)/samples-n$(N).parquet --scores $< --method iso --gamma $(GAMMA) --out $@

$(OUT)/pairs-direct.parquet: $(OUT)/scores-n$(N).parquet
	$(ISWT) weight-pairs --samples $(OUT)/samples-n$(N).parquet --scores $< --method direct --out $@

$(OUT)/pairs-rso.parquet: $(OUT)/scores-n$(N4).parquet
	$(ISWT) weight-pairs --samples $(OUT)/samples-n$(N4).parquet --scores $< --method rso --beta $(RSO_BETA) \
		--num-accept $(NUM_ACCEPT) --pairing first-round --seed $(SEED) --out $@

# each method trains on the samples its pairs were formed from
$(OUT)/iso/manifest.json $(OUT)/direct/manifest.json: $(OUT)/%/manifest.json: $(OUT)/pairs-%.parquet
	$(ISWT) train --model $(MODEL) --samples $(OUT)/samples-n$(N).parquet --scores $(OUT)/scores-n$(N).parquet \
		--loss sigmoid --pairs $< --beta $(DPO_BETA) --lr $(LR) --batch-size $(BATCH) --out $(OUT)/$*

$(OUT)/rso/manifest.json: $(OUT)/pairs-rso.parquet
	$(ISWT) train --model $(MODEL) --samples $(OUT)/samples-n$(N4).parquet --scores $(OUT)/scores-n$(N4).parquet \
		--loss sigmoid --pairs $< --beta $(DPO_BETA) --lr $(LR) --batch-size $(BATCH) --out $(OUT)/rso

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-%.parquet: $(OUT)/%/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/$* --out $@

$(OUT)/report.html: $(EVALS)
	$(ISWT) report $(OUT) --out $@
