# Distribution matching, measured exactly: the reproduction table on answer-set prompts (--task sets).
#
# Every prompt lists its rewarded answers, so pi* = pi_ref e^{beta r} / Z and log Z are exact (teacher
# forcing; `iswt evaluate --target-beta`). On the same offline samples (the base model at temperature 1):
#
#   base       the reference itself
#   disa       train --loss tb with the frozen IS log Z (offline anchoring)
#   dpg        train --loss dpg, the forward-KL objective, against the same frozen log Z
#   learned    train --loss tb --z-mode learned (the online-coupled ablation)
#   sft        train --loss sft on each prompt's best sample
#   iso        weighted DPO pairs (weight-pairs --method iso), DPO beta = 1/BETA so its target is pi* too
#   direct     the same pairs uniformly weighted
#   rso        rejection-sampled pairs from RSO_N = 4 N samples per prompt (4x the samples)
#   grpo gspo  T online rounds of sample -> score -> train, N/T samples per prompt per round (equal budget),
#              each round sampling from the previous round's adapter
#
# every trained method once per seed in SEEDS, each at its own learning rate (LR_METHOD: the rates the
# sample-efficiency study's sweep chose; GRPO and GSPO at LR, train's default), batches shuffled across prompts,
# all evaluated with --target-beta BETA on the training prompts. log Z accuracy: estimate-z from proposals of
# different strength (temperature TEMPS at K = N, temperature 1 at K = RSO_N, the disa adapter of the first
# seed), each checked against the exact log Z by `evaluate --z` (log_z_error, and whether the reported 95%
# interval covers the exact value).
# The closing tables come from examples/distribution_matching_table.py.
#
#   make -f examples/distribution_matching.mk                   # embedded SmolLM2-135M on CPU
#   OMP_NUM_THREADS=2 make -f examples/distribution_matching.mk -j4 SEEDS="0 1 2 3 4" LIMIT=32   # 8+ cores

ISWT ?= iswt
PYTHON ?= python3
MODEL ?= smollm2-135m
OUT ?= runs/distribution-matching
TASK ?= sets
LIMIT ?= 8
N ?= 8
T ?= 2
RSO_N ?= $(shell echo $$(( $(N) * 4 )))
TOKENS ?= 8
REWARD ?= set
# the exact target needs the set reward; REWARD (what the training samples are scored with) may differ in tests
EVAL_REWARD ?= set
BETA ?= 2
DPO_BETA ?= $(shell $(PYTHON) -c "print(1 / $(BETA))")
GAMMA ?= 1
MAX_PAIRS ?= 4
LR ?= 1e-4
LR_disa ?= 3e-5
LR_learned ?= $(LR_disa)
LR_dpg ?= 1e-4
LR_sft ?= 1e-5
LR_iso ?= 1e-5
LR_direct ?= 1e-5
LR_rso ?= 1e-5
lr_of = $(or $(LR_$(1)),$(LR))
BATCH_ORDER ?= shuffled
EPOCHS ?= 6
BATCH ?= 8
BOOTSTRAP ?= 200
TEMPS ?= 0.7 1.5
SEEDS ?= 0 1 2
EVAL_N ?= 2
FIRST_SEED := $(firstword $(SEEDS))
ROUND_N := $(shell echo $$(( $(N) / $(T) )))

SAMPLES := $(OUT)/samples-t1-n$(N).parquet
SCORES := $(OUT)/scores-t1-n$(N).parquet
Z := $(OUT)/z-t1-n$(N).parquet
RSO_SAMPLES := $(OUT)/samples-t1-n$(RSO_N).parquet
RSO_SCORES := $(OUT)/scores-t1-n$(RSO_N).parquet
OFFLINE := disa dpg learned sft iso direct rso
ONLINE := grpo gspo
METHODS := $(OFFLINE) $(ONLINE)
RUNS := $(foreach m,$(METHODS),$(foreach s,$(SEEDS),$(m)-s$(s)))
EVALS := $(OUT)/eval-base.parquet $(RUNS:%=$(OUT)/eval-%.parquet)
PROPOSALS := t1-n$(N) t1-n$(RSO_N) $(TEMPS:%=t%-n$(N)) disa-n$(N)
ZEVALS := $(PROPOSALS:%=$(OUT)/zeval-%.parquet)
TRAIN_FLAGS = --model $(MODEL) --epochs $(EPOCHS) --batch-size $(BATCH) --batch-order $(BATCH_ORDER)
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split train --limit $(LIMIT) --max-new-tokens $(TOKENS) \
	--reward $(EVAL_REWARD) --target-beta $(BETA)

.PHONY: all table clean
all: table
# keep every file a pattern rule made (proposal samples, their scores, z): make would delete them as intermediates
.SECONDARY:

# ---------------------------------------------------------------- offline samples and log Z

$(OUT)/samples-t1-n%.parquet:
	$(ISWT) sample --model $(MODEL) --task $(TASK) --split train --limit $(LIMIT) --n $* \
		--max-new-tokens $(TOKENS) --seed 0 --out $@

$(OUT)/scores-t1-n%.parquet: $(OUT)/samples-t1-n%.parquet
	$(ISWT) score --samples $< --reward $(REWARD) --out $@

# Proposals other than the reference at temperature 1 need the reference's log-probs (score --ref-model).
define TEMPERATURE
$(OUT)/samples-t$(1)-n$(N).parquet:
	$$(ISWT) sample --model $$(MODEL) --task $$(TASK) --split train --limit $$(LIMIT) --n $$(N) \
		--temperature $(1) --max-new-tokens $$(TOKENS) --seed 0 --out $$@

$(OUT)/scores-t$(1)-n$(N).parquet: $(OUT)/samples-t$(1)-n$(N).parquet
	$$(ISWT) score --samples $$< --reward $$(REWARD) --ref-model $$(MODEL) --out $$@
endef
$(foreach t,$(TEMPS),$(eval $(call TEMPERATURE,$(t))))

$(OUT)/samples-disa-n$(N).parquet: $(OUT)/disa-s$(FIRST_SEED)/manifest.json
	$(ISWT) sample --model $(MODEL) --adapter $(OUT)/disa-s$(FIRST_SEED) --task $(TASK) --split train \
		--limit $(LIMIT) --n $(N) --max-new-tokens $(TOKENS) --seed 0 --out $@

$(OUT)/scores-disa-n$(N).parquet: $(OUT)/samples-disa-n$(N).parquet
	$(ISWT) score --samples $< --reward $(REWARD) --ref-model $(MODEL) --out $@

$(OUT)/z-%.parquet: $(OUT)/samples-%.parquet $(OUT)/scores-%.parquet
	$(ISWT) estimate-z --proposal $(OUT)/samples-$*.parquet --scores $(OUT)/scores-$*.parquet --beta $(BETA) \
		--bootstrap $(BOOTSTRAP) --seed 0 --out $@

# The base policy evaluated against each estimate: log_z_error and interval coverage in zeval-*.target.parquet.
$(OUT)/zeval-%.parquet: $(OUT)/z-%.parquet
	$(ISWT) evaluate $(EVAL_FLAGS) --n 1 --seed 0 --z $< --out $@

# ---------------------------------------------------------------- offline methods, one run per seed

$(OUT)/pairs-iso.parquet: $(SAMPLES) $(SCORES)
	$(ISWT) weight-pairs --samples $(SAMPLES) --scores $(SCORES) --method iso --gamma $(GAMMA) \
		--max-pairs-per-prompt $(MAX_PAIRS) --seed 0 --out $@

$(OUT)/pairs-direct.parquet: $(SAMPLES) $(SCORES)
	$(ISWT) weight-pairs --samples $(SAMPLES) --scores $(SCORES) --method direct \
		--max-pairs-per-prompt $(MAX_PAIRS) --seed 0 --out $@

$(OUT)/pairs-rso.parquet: $(RSO_SAMPLES) $(RSO_SCORES)
	$(ISWT) weight-pairs --samples $(RSO_SAMPLES) --scores $(RSO_SCORES) --method rso --beta $(DPO_BETA) \
		--num-accept $(N) --pairing first-round --max-pairs-per-prompt $(MAX_PAIRS) --seed 0 --out $@

define OFFLINE_RUNS
$(OUT)/disa-s$(1)/manifest.json: $(Z)
	$$(ISWT) train $$(TRAIN_FLAGS) --samples $$(SAMPLES) --scores $$(SCORES) --loss tb --z $$(Z) --beta $$(BETA) \
		--lr $$(call lr_of,disa) --seed $(1) --out $(OUT)/disa-s$(1)

$(OUT)/dpg-s$(1)/manifest.json: $(Z)
	$$(ISWT) train $$(TRAIN_FLAGS) --samples $$(SAMPLES) --scores $$(SCORES) --loss dpg --z $$(Z) --beta $$(BETA) \
		--lr $$(call lr_of,dpg) --seed $(1) --out $(OUT)/dpg-s$(1)

$(OUT)/learned-s$(1)/manifest.json: $(SAMPLES) $(SCORES)
	$$(ISWT) train $$(TRAIN_FLAGS) --samples $$(SAMPLES) --scores $$(SCORES) --loss tb --z-mode learned \
		--beta $$(BETA) --lr $$(call lr_of,learned) --seed $(1) --out $(OUT)/learned-s$(1)

$(OUT)/sft-s$(1)/manifest.json: $(SAMPLES) $(SCORES)
	$$(ISWT) train $$(TRAIN_FLAGS) --samples $$(SAMPLES) --scores $$(SCORES) --loss sft --sft-select best \
		--lr $$(call lr_of,sft) --seed $(1) --out $(OUT)/sft-s$(1)

$(OUT)/iso-s$(1)/manifest.json $(OUT)/direct-s$(1)/manifest.json: $(OUT)/%-s$(1)/manifest.json: $(OUT)/pairs-%.parquet
	$$(ISWT) train $$(TRAIN_FLAGS) --samples $$(SAMPLES) --scores $$(SCORES) --loss sigmoid --pairs $$< \
		--beta $$(DPO_BETA) --lr $$(call lr_of,$$*) --seed $(1) --out $(OUT)/$$*-s$(1)

$(OUT)/rso-s$(1)/manifest.json: $(OUT)/pairs-rso.parquet
	$$(ISWT) train $$(TRAIN_FLAGS) --samples $$(RSO_SAMPLES) --scores $$(RSO_SCORES) --loss sigmoid --pairs $$< \
		--beta $$(DPO_BETA) --lr $$(call lr_of,rso) --seed $(1) --out $(OUT)/rso-s$(1)
endef
$(foreach s,$(SEEDS),$(eval $(call OFFLINE_RUNS,$(s))))

# ---------------------------------------------------------------- online GRPO / GSPO: T rounds per seed

# $(1) method, $(2) seed, $(3) round, $(4) previous round (empty for round 1: the base model samples)
define ROUND
$(OUT)/$(1)-s$(2)/round$(3)/samples.parquet: $(if $(4),$(OUT)/$(1)-s$(2)/round$(4)/run/manifest.json)
	$$(ISWT) sample --model $$(MODEL)$(if $(4), --adapter $(OUT)/$(1)-s$(2)/round$(4)/run) --task $$(TASK) \
		--split train --limit $$(LIMIT) --n $$(ROUND_N) --max-new-tokens $$(TOKENS) --seed $(shell echo $$(( $(2) * 100 + $(3) ))) --out $$@

$(OUT)/$(1)-s$(2)/round$(3)/scores.parquet: $(OUT)/$(1)-s$(2)/round$(3)/samples.parquet
	$$(ISWT) score --samples $$< --reward $$(REWARD) --out $$@

$(OUT)/$(1)-s$(2)/round$(3)/run/manifest.json: $(OUT)/$(1)-s$(2)/round$(3)/scores.parquet
	$$(ISWT) train $$(TRAIN_FLAGS)$(if $(4), --adapter $(OUT)/$(1)-s$(2)/round$(4)/run) --loss $(1) \
		--samples $(OUT)/$(1)-s$(2)/round$(3)/samples.parquet --scores $$< --lr $$(LR) --seed $(2) --out $(OUT)/$(1)-s$(2)/round$(3)/run
endef
prev = $(filter-out 0,$(shell echo $$(( $(1) - 1 ))))
$(foreach m,$(ONLINE),$(foreach s,$(SEEDS),$(foreach t,$(shell seq 1 $(T)),\
	$(eval $(call ROUND,$(m),$(s),$(t),$(call prev,$(t)))))))

# ---------------------------------------------------------------- evaluation and the tables

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --n $(EVAL_N) --seed 0 --out $@

$(OUT)/eval-%.parquet: $(OUT)/%/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --n $(EVAL_N) --seed 0 --adapter $(OUT)/$* --out $@

# an online method's policy is its last round's adapter
define ONLINE_EVAL
$(OUT)/eval-$(1)-s%.parquet: $(OUT)/$(1)-s%/round$(T)/run/manifest.json
	$$(ISWT) evaluate $$(EVAL_FLAGS) --n $$(EVAL_N) --seed 0 --adapter $(OUT)/$(1)-s$$*/round$(T)/run --out $$@
endef
$(foreach m,$(ONLINE),$(eval $(call ONLINE_EVAL,$(m))))

table: $(EVALS) $(ZEVALS)
	$(PYTHON) examples/distribution_matching_table.py $(OUT)

clean:
	rm -rf $(OUT)
