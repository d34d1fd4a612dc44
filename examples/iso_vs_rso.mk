# Importance-sampled pairs (ISO) vs statistical rejection sampling (RSO) vs uniform weights (direct).
# RSO gets 4x the samples per prompt (RSO_N = 4 N), as in the ISO paper's comparison; ISO and direct use N.
#
#   make -f examples/iso_vs_rso.mk
#   make -f examples/iso_vs_rso.mk MODEL=./my-sft-model LIMIT=1000 N=8 GAMMA=1 RSO_BETA=0.5

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= runs/iso-vs-rso
TASK ?= arith
LIMIT ?= 16
N ?= 4
RSO_N ?= $(shell echo $$(( $(N) * 4 )))
TOKENS ?= 128
REWARD ?= math:graded
GAMMA ?= 0.5
RSO_BETA ?= 0.5
NUM_ACCEPT ?= $(N)
DPO_BETA ?= 0.1
LR ?= 3e-4
EPOCHS ?= 1
BATCH ?= 8
EVAL_LIMIT ?= 16
EVAL_N ?= 4
EVAL_REWARD ?= math
SEED ?= 0

SAMPLES := $(OUT)/samples-n$(N).parquet
SCORES := $(OUT)/scores-n$(N).parquet
RSO_SAMPLES := $(OUT)/samples-n$(RSO_N).parquet
RSO_SCORES := $(OUT)/scores-n$(RSO_N).parquet
METHODS := iso rso direct
EVALS := $(OUT)/eval-base.parquet $(METHODS:%=$(OUT)/eval-%.parquet)
TRAIN_FLAGS = --model $(MODEL) --loss sigmoid --beta $(DPO_BETA) --lr $(LR) --epochs $(EPOCHS) \
	--batch-size $(BATCH) --seed $(SEED)
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split test --limit $(EVAL_LIMIT) --n $(EVAL_N) \
	--max-new-tokens $(TOKENS) --reward $(EVAL_REWARD) --seed $(SEED)

.PHONY: all clean
all: $(OUT)/report.html
	$(ISWT) evaluate --compare $(EVALS)

$(OUT)/samples-n%.parquet:
	$(ISWT) sample --model $(MODEL) --task $(TASK) --split train --limit $(LIMIT) --n $* \
		--max-new-tokens $(TOKENS) --seed $(SEED) --out $@

$(OUT)/scores-n%.parquet: $(OUT)/samples-n%.parquet
	$(ISWT) score --samples $< --reward $(REWARD) --out $@

$(OUT)/pairs-iso.parquet: $(SAMPLES) $(SCORES)
	$(ISWT) weight-pairs --samples $(SAMPLES) --scores $(SCORES) --method iso --gamma $(GAMMA) --seed $(SEED) --out $@

$(OUT)/pairs-direct.parquet: $(SAMPLES) $(SCORES)
	$(ISWT) weight-pairs --samples $(SAMPLES) --scores $(SCORES) --method direct --seed $(SEED) --out $@

$(OUT)/pairs-rso.parquet: $(RSO_SAMPLES) $(RSO_SCORES)
	$(ISWT) weight-pairs --samples $(RSO_SAMPLES) --scores $(RSO_SCORES) --method rso --beta $(RSO_BETA) \
		--num-accept $(NUM_ACCEPT) --pairing first-round --seed $(SEED) --out $@

# each method trains on the samples its pairs were formed from
$(OUT)/iso/manifest.json $(OUT)/direct/manifest.json: $(OUT)/%/manifest.json: $(OUT)/pairs-%.parquet $(SAMPLES) $(SCORES)
	$(ISWT) train $(TRAIN_FLAGS) --samples $(SAMPLES) --scores $(SCORES) --pairs $< --out $(OUT)/$*

$(OUT)/rso/manifest.json: $(OUT)/pairs-rso.parquet $(RSO_SAMPLES) $(RSO_SCORES)
	$(ISWT) train $(TRAIN_FLAGS) --samples $(RSO_SAMPLES) --scores $(RSO_SCORES) --pairs $< --out $(OUT)/rso

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-%.parquet: $(OUT)/%/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/$* --out $@

$(OUT)/report.html: $(EVALS)
	$(ISWT) report $(OUT) --out $@

clean:
	rm -rf $(OUT)
