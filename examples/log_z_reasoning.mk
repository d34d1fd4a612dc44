# Offline log Z on reasoning traces: every estimator of estimate-z against the truth, over proposal x cap x beta x K.
#
# Word problems with worked answers (examples/data/word_problems.jsonl, few-shot, written for this study and in no
# other test) make the embedded model reason for tens of tokens before "The answer is". With the binary math
# reward Z = 1 + (e^beta - 1) P_ref(correct), so the reference's own large sample at each response cap (N_REF per
# prompt, temperature 1) gives every prompt's true log Z with an exact binomial interval (iswcli/binary_truth.py).
# Each proposal draws K_MAX samples per prompt at the same cap, is scored with reference log-probs, and the table
# cuts them into disjoint replicates of K for every K of KS and estimates each at every beta of BETAS with both
# estimators; estimate-z itself runs on all K_MAX samples at each beta (the table checks it agrees).
#
#   make -f examples/log_z_reasoning.mk                     # every cap in CAPS, every proposal, then the table
#   make -f examples/log_z_reasoning.mk CAPS=96 PROPOSALS="t1 t07" table
#   python examples/log_z_truth.py --reference OUT/tokens96/ref.parquet \
#       --reference-scores OUT/tokens96/ref.scores.parquet --z OUT/tokens96/z-t07-b1.parquet
#
# Proposals: t1 the reference itself (an independent draw), t07 and t05 tempered, topp09 top-p 0.9 (truncated),
# sft and disa LoRA adapters trained on the reference's own samples at ADAPTER_CAP (`make ... adapters`, then add
# them to PROPOSALS): SFT on its correct samples, DISA (tb) against its log Z at ADAPTER_BETA.

ISWT ?= iswt
PYTHON ?= python3
MODEL ?= smollm2-135m
OUT ?= runs/log-z-reasoning
PROMPTS ?= examples/data/word_problems.jsonl
LIMIT ?= 8
CAPS ?= 96 32
N_REF ?= 128
K_MAX ?= 32
KS ?= 8,32
BETAS ?= 0.5 1 2 4
BATCH ?= 128
SEED ?= 0
PROPOSALS ?= t07 t05 t1 topp09
TABLE_OUT ?= docs/study/log_z_reasoning.md
ADAPTER_CAP ?= 96
ADAPTER_BETA ?= 2
ADAPTER_STEPS ?= 64
ADAPTERS := $(OUT)/adapters

SAMPLING_t1 := --temperature 1 --seed 1
SAMPLING_t07 := --temperature 0.7 --seed 2
SAMPLING_t05 := --temperature 0.5 --seed 3
SAMPLING_topp09 := --top-p 0.9 --seed 4
SAMPLING_sft := --adapter $(ADAPTERS)/sft --seed 5
SAMPLING_disa := --adapter $(ADAPTERS)/disa --seed 6
NEEDS_sft := $(ADAPTERS)/sft/manifest.json
NEEDS_disa := $(ADAPTERS)/disa/manifest.json

SAMPLE = $(ISWT) sample --model $(MODEL) --prompts $(PROMPTS) --limit $(LIMIT) --batch-size $(BATCH)
comma := ,
Z_FILES = $(foreach c,$(CAPS),$(foreach p,$(PROPOSALS),$(foreach b,$(BETAS),$(OUT)/tokens$(c)/z-$(p)-b$(b).parquet)))

.PHONY: all table adapters
.SECONDARY:
all: table

table: $(Z_FILES)
	$(PYTHON) examples/log_z_reasoning_table.py $(OUT) --betas $(subst $() ,$(comma),$(strip $(BETAS))) --ks $(KS) \
		--out $(TABLE_OUT)

# the truth at cap C: the reference itself, temperature 1, no truncation, N_REF samples per prompt
define CAP_RULES
$(OUT)/tokens$(1)/ref.parquet:
	$(SAMPLE) --n $(N_REF) --max-new-tokens $(1) --seed $(SEED) --out $$@

$(OUT)/tokens$(1)/ref.scores.parquet: $(OUT)/tokens$(1)/ref.parquet
	$(ISWT) score --samples $$< --reward math --out $$@
endef

# adapters trained on the reference's samples at ADAPTER_CAP, used as proposals at every cap
REF_AT := --samples $(OUT)/tokens$(ADAPTER_CAP)/ref.parquet --scores $(OUT)/tokens$(ADAPTER_CAP)/ref.scores.parquet
TRAIN = $(ISWT) train --model $(MODEL) $(REF_AT) --batch-order shuffled --batch-size 8 --seed $(SEED)
adapters: $(NEEDS_sft) $(NEEDS_disa)

$(ADAPTERS)/z-ref.parquet: $(OUT)/tokens$(ADAPTER_CAP)/ref.scores.parquet
	$(ISWT) estimate-z --proposal $(OUT)/tokens$(ADAPTER_CAP)/ref.parquet --scores $< --beta $(ADAPTER_BETA) --out $@

$(ADAPTERS)/sft/manifest.json: $(OUT)/tokens$(ADAPTER_CAP)/ref.scores.parquet
	$(TRAIN) --loss sft --sft-select correct --epochs 3 --out $(@D)

$(ADAPTERS)/disa/manifest.json: $(ADAPTERS)/z-ref.parquet
	$(TRAIN) --loss tb --z $< --max-steps $(ADAPTER_STEPS) --out $(@D)

# proposal P at cap C: K_MAX samples per prompt, scored with the reference's teacher-forced log-probs
define PROPOSAL_RULES
$(OUT)/tokens$(1)/$(2).parquet: $(NEEDS_$(2)) | $(OUT)/tokens$(1)/ref.scores.parquet
	$(SAMPLE) --n $(K_MAX) --max-new-tokens $(1) $(SAMPLING_$(2)) --out $$@

$(OUT)/tokens$(1)/$(2).scores.parquet: $(OUT)/tokens$(1)/$(2).parquet
	$(ISWT) score --samples $$< --reward math --ref-model $(MODEL) --out $$@
endef

# estimate-z's default on all K_MAX samples of proposal P at beta B
define Z_RULE
$(OUT)/tokens$(1)/z-$(2)-b$(3).parquet: $(OUT)/tokens$(1)/$(2).parquet $(OUT)/tokens$(1)/$(2).scores.parquet
	$(ISWT) estimate-z --proposal $$(word 1,$$^) --scores $$(word 2,$$^) --beta $(3) --bootstrap 200 --out $$@
endef

$(foreach c,$(CAPS),$(eval $(call CAP_RULES,$(c))))
$(foreach c,$(CAPS),$(foreach p,$(PROPOSALS),$(eval $(call PROPOSAL_RULES,$(c),$(p)))))
$(foreach c,$(CAPS),$(foreach p,$(PROPOSALS),$(foreach b,$(BETAS),$(eval $(call Z_RULE,$(c),$(p),$(b))))))
