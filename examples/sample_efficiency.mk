# The sample-efficiency study: which method gets closest to pi* from N samples per prompt.
#
# Answer-set prompts (--task sets) make pi* = pi_ref e^{beta r} / Z and KL(pi* || policy) exact. For each
# N in NS and each seed in SEEDS, N samples per prompt are drawn from the base model (temperature 1, the seed
# as the sampling seed) on LIMIT training prompts, scored with the set reward, and every method trains from
# those same samples for the same STEPS optimizer steps of BATCH examples (--max-steps keeps budgets equal):
#
#   disa   --loss tb against estimate-z's frozen log Z (beta BETA)
#   dpg    --loss dpg, the forward-KL objective, against the same z
#   learned --loss tb with a learned log Z (--z-mode learned, the online-coupled ablation)
#   sft    --loss sft on each prompt's best sample
#   iso    sigmoid DPO on ISO-weighted pairs (weight-pairs --method iso), DPO beta 1/BETA so its target is pi*,
#          the MAX_PAIRS highest-weighted per prompt; iso-all: every pair, uncapped
#   direct sigmoid DPO on uniformly weighted pairs (weight-pairs --method direct), MAX_PAIRS per prompt
#   rso    sigmoid DPO on pairs of samples accepted by RSO's rejection sampler from the same N samples
#
# Every run measures kl_set, tv_set, p_valid and eff_answers against the exact pi* at step 0 and after its last
# update, on the training prompts and on the test split (train --eval-target-every, --eval-prompts sets:test);
# per-prompt values land in each run's target_curves.parquet. Each method's learning rate comes from a sweep
# over LRS at N = 32, first seed (lowest final training kl_set); the grid then runs at that rate. The grid's
# run for N = 32, first seed, is a copy of the sweep's run at the chosen rate (same command, same result), so
# every grid run is OUT/nN-sSEED/METHOD and `iswt report OUT` draws a line per method against N. `extras` adds
# RSO from 4N samples and the null control (disa and dpg on rewards permuted within each prompt) at N = 32.
#
#   make -f examples/sample_efficiency.mk            # the sweep, then the grid, then the table and plot
#   make -f examples/sample_efficiency.mk extras defaults table
#   make -f examples/sample_efficiency.mk grid extras LRS= LR_FROM=runs/other-study   # rates from another sweep
#
# `defaults` trains tb and dpg at N = SWEEP_N with nothing but the loss, the inputs and --epochs 3; `online` runs
# ISO and RSO as T online rounds on the grid's N = SWEEP_N budget (after the grid's runs it takes the rates of);
# `long` trains a few methods past the budget at their grid rate.

ISWT ?= iswt
PYTHON ?= python3
MODEL ?= smollm2-135m
OUT ?= runs/sample-efficiency
LIMIT ?= 16
NS ?= 8 32 128
SEEDS ?= 0 1 2
LRS ?= 1e-5 3e-5 1e-4 3e-4
# the directory whose sweep chooses each method's rate; LRS= (empty) with LR_FROM=DIR reuses DIR's sweep
LR_FROM ?= $(OUT)
# shuffled: a fixed step budget spreads over every prompt (by-prompt batches hold one prompt's examples, so
# 48 steps of 8 at N = 32 would train on 12 of the 16 prompts, at N = 128 on 3)
BATCH_ORDER ?= shuffled
SWEEP_N ?= 32
STEPS ?= 48
BATCH ?= 8
TOKENS ?= 8
BETA ?= 2
DPO_BETA ?= $(shell $(PYTHON) -c "print(1 / $(BETA))")
GAMMA ?= 1
MAX_PAIRS ?= 8
EVAL_PROMPTS ?= sets:test
METHODS ?= disa dpg learned sft iso iso-all direct rso
FIRST_SEED := $(firstword $(SEEDS))
TABLE := $(PYTHON) examples/sample_efficiency_table.py

# train for $(1) steps, measured against pi* every $(2)
TRAIN_FOR = $(ISWT) train --model $(MODEL) --max-steps $(1) --batch-size $(BATCH) --batch-order $(BATCH_ORDER) \
	--eval-target-every $(2) --eval-prompts $(EVAL_PROMPTS)
TRAIN = $(call TRAIN_FOR,$(STEPS),$(STEPS))

# the flags of each method, given the directory $(1) of one (N, seed) cell
flags_disa = --loss tb --z $(1)/z.parquet
flags_dpg = --loss dpg --z $(1)/z.parquet
flags_learned = --loss tb --z-mode learned --beta $(BETA) --eval-target-beta $(BETA)
flags_sft = --loss sft --sft-select best --eval-target-beta $(BETA)
flags_iso = --loss sigmoid --pairs $(1)/pairs-iso.parquet --beta $(DPO_BETA) --eval-target-beta $(BETA)
flags_iso-all = --loss sigmoid --pairs $(1)/pairs-iso-all.parquet --beta $(DPO_BETA) --eval-target-beta $(BETA)
flags_direct = --loss sigmoid --pairs $(1)/pairs-direct.parquet --beta $(DPO_BETA) --eval-target-beta $(BETA)
flags_rso = --loss sigmoid --pairs $(1)/pairs-rso.parquet --beta $(DPO_BETA) --eval-target-beta $(BETA)
inputs_disa = $(1)/z.parquet
inputs_dpg = $(1)/z.parquet
inputs_iso = $(1)/pairs-iso.parquet
inputs_iso-all = $(1)/pairs-iso-all.parquet
inputs_direct = $(1)/pairs-direct.parquet
inputs_rso = $(1)/pairs-rso.parquet

SWEEP := $(strip $(foreach m,$(METHODS),$(foreach lr,$(LRS),$(OUT)/n$(SWEEP_N)-s$(FIRST_SEED)/$(m)-lr$(lr)/manifest.json)))
ALL_CELLS := $(foreach s,$(SEEDS),$(foreach n,$(NS),n$(n)-s$(s)))
CELLS := $(if $(SWEEP),$(filter-out n$(SWEEP_N)-s$(FIRST_SEED),$(ALL_CELLS)),$(ALL_CELLS))
GRID := $(foreach c,$(ALL_CELLS),$(foreach m,$(METHODS),$(OUT)/$(c)/$(m)/manifest.json))
EXTRA_CELLS := $(foreach s,$(SEEDS),n$(SWEEP_N)-s$(s))
EXTRAS := $(foreach c,$(EXTRA_CELLS),$(foreach m,rso4n null-disa null-dpg,$(OUT)/$(c)/$(m)/manifest.json))

.PHONY: all sweep grid extras defaults table clean
all: table
sweep: $(SWEEP)
grid: $(GRID)
extras: $(EXTRAS)
table:
	$(TABLE) $(OUT) --lr-from $(LR_FROM)
table: $(SWEEP) $(GRID)
.SECONDARY:

# ---------------------------------------------------------------- one (N, seed) cell: samples, scores, z, pairs

define CELL
$(OUT)/n$(1)-s$(2)/samples.parquet:
	$$(ISWT) sample --model $$(MODEL) --task sets --split train --limit $$(LIMIT) --n $(1) \
		--max-new-tokens $$(TOKENS) --seed $(2) --out $$@

$(OUT)/n$(1)-s$(2)/scores.parquet: $(OUT)/n$(1)-s$(2)/samples.parquet
	$$(ISWT) score --samples $$< --reward set --out $$@

$(OUT)/n$(1)-s$(2)/z.parquet: $(OUT)/n$(1)-s$(2)/scores.parquet
	$$(ISWT) estimate-z --proposal $(OUT)/n$(1)-s$(2)/samples.parquet --scores $$< --beta $$(BETA) --seed $(2) --out $$@

$(OUT)/n$(1)-s$(2)/pairs-iso.parquet: $(OUT)/n$(1)-s$(2)/scores.parquet
	$$(ISWT) weight-pairs --samples $(OUT)/n$(1)-s$(2)/samples.parquet --scores $$< --method iso --gamma $$(GAMMA) \
		--max-pairs-per-prompt $$(MAX_PAIRS) --seed $(2) --out $$@

$(OUT)/n$(1)-s$(2)/pairs-iso-all.parquet: $(OUT)/n$(1)-s$(2)/scores.parquet
	$$(ISWT) weight-pairs --samples $(OUT)/n$(1)-s$(2)/samples.parquet --scores $$< --method iso --gamma $$(GAMMA) \
		--seed $(2) --out $$@

$(OUT)/n$(1)-s$(2)/pairs-direct.parquet: $(OUT)/n$(1)-s$(2)/scores.parquet
	$$(ISWT) weight-pairs --samples $(OUT)/n$(1)-s$(2)/samples.parquet --scores $$< --method direct \
		--max-pairs-per-prompt $$(MAX_PAIRS) --seed $(2) --out $$@

# RSO accepts a quarter of the N samples (at least 2) by rejection sampling toward pi*, then pairs them
$(OUT)/n$(1)-s$(2)/pairs-rso.parquet: $(OUT)/n$(1)-s$(2)/scores.parquet
	$$(ISWT) weight-pairs --samples $(OUT)/n$(1)-s$(2)/samples.parquet --scores $$< --method rso --beta $$(DPO_BETA) \
		--num-accept $(shell echo $$(( $(1) / 4 > 2 ? $(1) / 4 : 2 ))) --pairing first-round \
		--max-pairs-per-prompt $$(MAX_PAIRS) --seed $(2) --out $$@
endef
$(foreach s,$(SEEDS),$(foreach n,$(sort $(NS) $(shell echo $$(( $(SWEEP_N) * 4 )))),$(eval $(call CELL,$(n),$(s)))))

# ---------------------------------------------------------------- the learning-rate sweep, then the grid

# $(1) method, $(2) cell directory, $(3) learning rate, $(4) run directory
define RUN
$(4)/manifest.json: $(2)/scores.parquet $(call inputs_$(1),$(2))
	$$(TRAIN) --samples $(2)/samples.parquet --scores $(2)/scores.parquet $$(call flags_$(1),$(2)) \
		--lr $(3) --seed $(lastword $(subst -s, ,$(notdir $(2)))) --out $(4)
endef
$(foreach m,$(METHODS),$(foreach lr,$(LRS),\
	$(eval $(call RUN,$(m),$(OUT)/n$(SWEEP_N)-s$(FIRST_SEED),$(lr),$(OUT)/n$(SWEEP_N)-s$(FIRST_SEED)/$(m)-lr$(lr)))))
# the grid's rate is read when the run starts: the sweep has finished by then
$(foreach c,$(CELLS),$(foreach m,$(METHODS),\
	$(eval $(call RUN,$(m),$(OUT)/$(c),$$$$($$(TABLE) lr $(LR_FROM) $(m)),$(OUT)/$(c)/$(m)))))
$(GRID): $(SWEEP)
define CHOSEN
$(OUT)/n$(SWEEP_N)-s$(FIRST_SEED)/$(1)/manifest.json: $(SWEEP)
	rm -rf $$(@D) && cp -r $(OUT)/n$(SWEEP_N)-s$(FIRST_SEED)/$(1)-lr$$$$($$(TABLE) lr $(OUT) $(1)) $$(@D)
endef
$(if $(SWEEP),$(foreach m,$(METHODS),$(eval $(call CHOSEN,$(m)))))

# ---------------------------------------------------------------- extras at N = SWEEP_N

define EXTRA_CELL
# RSO from 4N samples: 4x the sampling budget, N accepted
$(OUT)/n$(SWEEP_N)-s$(1)/rso4n/manifest.json: $(OUT)/n$(shell echo $$(( $(SWEEP_N) * 4 )))-s$(1)/scores.parquet $(SWEEP)
	$$(ISWT) weight-pairs --samples $(OUT)/n$(shell echo $$(( $(SWEEP_N) * 4 )))-s$(1)/samples.parquet --scores $$< \
		--method rso --beta $$(DPO_BETA) --num-accept $(SWEEP_N) --pairing first-round \
		--max-pairs-per-prompt $$(MAX_PAIRS) --seed $(1) --out $(OUT)/n$(SWEEP_N)-s$(1)/pairs-rso4n.parquet
	$$(TRAIN) --samples $(OUT)/n$(shell echo $$(( $(SWEEP_N) * 4 )))-s$(1)/samples.parquet --scores $$< \
		--loss sigmoid --pairs $(OUT)/n$(SWEEP_N)-s$(1)/pairs-rso4n.parquet --beta $$(DPO_BETA) \
		--eval-target-beta $$(BETA) --lr $$$$($$(TABLE) lr $(LR_FROM) rso) --seed $(1) --out $(OUT)/n$(SWEEP_N)-s$(1)/rso4n

# the null control: rewards permuted within each prompt (seeded), z re-estimated from them
$(OUT)/n$(SWEEP_N)-s$(1)/null/scores.parquet: $(OUT)/n$(SWEEP_N)-s$(1)/scores.parquet
	$$(TABLE) permute $$< $$@ --seed $(1)

$(OUT)/n$(SWEEP_N)-s$(1)/null/z.parquet: $(OUT)/n$(SWEEP_N)-s$(1)/null/scores.parquet
	$$(ISWT) estimate-z --proposal $(OUT)/n$(SWEEP_N)-s$(1)/samples.parquet --scores $$< --beta $$(BETA) \
		--seed $(1) --out $$@

$(OUT)/n$(SWEEP_N)-s$(1)/null-%/manifest.json: $(OUT)/n$(SWEEP_N)-s$(1)/null/z.parquet $(SWEEP)
	$$(TRAIN) --samples $(OUT)/n$(SWEEP_N)-s$(1)/samples.parquet --scores $(OUT)/n$(SWEEP_N)-s$(1)/null/scores.parquet \
		--loss $$(if $$(filter disa,$$*),tb,dpg) --z $$< --eval-target-beta $$(BETA) \
		--lr $$$$($$(TABLE) lr $(LR_FROM) $$*) --seed $(1) --out $(OUT)/n$(SWEEP_N)-s$(1)/null-$$*
endef
$(foreach s,$(SEEDS),$(eval $(call EXTRA_CELL,$(s))))

# ---------------------------------------------------------------- ISO against RSO as T online rounds

# ISO's claim is about online rounds. Each round draws SWEEP_N/T samples per prompt from the current policy and
# trains the previous round's adapter (its reference) for STEPS/T steps at DPO beta T/BETA, so the T tilts
# compound to pi_ref e^{BETA r} = pi*: the grid's N = SWEEP_N budget of samples, steps and target, spent in T
# rounds, at the rate the method's grid run used. `evaluate --target-beta` measures the last round's adapter
# against the exact pi* of the base model, on the training prompts and the held-out ones.
T ?= 2
ONLINE_METHODS ?= iso rso
ROUND_N := $(shell echo $$(( $(SWEEP_N) / $(T) )))
ROUND_STEPS := $(shell echo $$(( $(STEPS) / $(T) )))
ROUND_BETA := $(shell $(PYTHON) -c "print($(T) / $(BETA))")
pairs_iso = --method iso --gamma $(GAMMA)
pairs_rso = --method rso --beta $(ROUND_BETA) --num-accept $(shell echo $$(( $(ROUND_N) / 4 > 2 ? $(ROUND_N) / 4 : 2 ))) \
	--pairing first-round
ONLINE := $(foreach s,$(SEEDS),$(foreach m,$(ONLINE_METHODS),$(foreach g,train test,$(OUT)/online-s$(s)/$(m)/eval-$(g).parquet)))
online: $(ONLINE)
.PHONY: online

# $(1) method, $(2) seed, $(3) round, $(4) the previous round (empty for the first, which samples the base model),
# $(5) the round's sampling seed (100 x round + seed: no round draws another's or the grid's samples)
define ROUND
$(OUT)/online-s$(2)/$(1)/round$(3)/samples.parquet: $(if $(4),$(OUT)/online-s$(2)/$(1)/round$(4)/run/manifest.json)
	$$(ISWT) sample --model $$(MODEL)$(if $(4), --adapter $(OUT)/online-s$(2)/$(1)/round$(4)/run) --task sets \
		--split train --limit $$(LIMIT) --n $$(ROUND_N) --max-new-tokens $$(TOKENS) --seed $(5) --out $$@

$(OUT)/online-s$(2)/$(1)/round$(3)/scores.parquet: $(OUT)/online-s$(2)/$(1)/round$(3)/samples.parquet
	$$(ISWT) score --samples $$< --reward set --out $$@

$(OUT)/online-s$(2)/$(1)/round$(3)/pairs.parquet: $(OUT)/online-s$(2)/$(1)/round$(3)/scores.parquet
	$$(ISWT) weight-pairs --samples $(OUT)/online-s$(2)/$(1)/round$(3)/samples.parquet --scores $$< $$(pairs_$(1)) \
		--max-pairs-per-prompt $$(MAX_PAIRS) --seed $(5) --out $$@

$(OUT)/online-s$(2)/$(1)/round$(3)/run/manifest.json: $(OUT)/online-s$(2)/$(1)/round$(3)/pairs.parquet \
		| $(OUT)/n$(SWEEP_N)-s$(FIRST_SEED)/$(1)/manifest.json
	$$(ISWT) train --model $$(MODEL)$(if $(4), --adapter $(OUT)/online-s$(2)/$(1)/round$(4)/run) \
		--samples $(OUT)/online-s$(2)/$(1)/round$(3)/samples.parquet --scores $(OUT)/online-s$(2)/$(1)/round$(3)/scores.parquet \
		--loss sigmoid --pairs $$< --beta $$(ROUND_BETA) --max-steps $$(ROUND_STEPS) --batch-size $$(BATCH) \
		--batch-order $$(BATCH_ORDER) --lr $$$$($$(TABLE) grid-lr $(OUT)/n$$(SWEEP_N)-s$(FIRST_SEED)/$(1)) \
		--seed $(2) --out $$(@D)
endef
$(foreach s,$(SEEDS),$(foreach m,$(ONLINE_METHODS),$(foreach t,$(shell seq 1 $(T)),\
	$(eval $(call ROUND,$(m),$(s),$(t),$(filter-out 0,$(shell echo $$(( $(t) - 1 )))),$(shell echo $$(( 100 * $(t) + $(s) ))))))))

# $(1) the split measured, $(2) its prompt limit
define ONLINE_EVAL
$(OUT)/online-s%/eval-$(1).parquet: $(OUT)/online-s%/round$(T)/run/manifest.json
	$$(ISWT) evaluate --model $$(MODEL) --adapter $$(<D) --task sets --split $(1) $(2) --n 4 \
		--max-new-tokens $$(TOKENS) --reward set --target-beta $$(BETA) --seed $$(firstword $$(subst /, ,$$*)) --out $$@
endef
$(eval $(call ONLINE_EVAL,train,--limit $(LIMIT)))
$(eval $(call ONLINE_EVAL,test,))

# ---------------------------------------------------------------- longer training at the chosen rate

# A fixed budget at a low rate can stop a method near pi* on its way to a fixed point elsewhere. `long` trains
# LONG_METHODS LONG_STEPS steps from the grid's N = SWEEP_N samples of the first seed, at the rate its grid run
# used, measuring every LONG_EVERY steps: a method whose fixed point is pi* stays near it, the others move past.
LONG_STEPS ?= $(shell echo $$(( $(STEPS) * 2 )))
LONG_EVERY ?= $(shell echo $$(( $(STEPS) / 3 )))
LONG_METHODS ?= disa dpg sft rso
LONG_CELL := $(OUT)/n$(SWEEP_N)-s$(FIRST_SEED)
LONG := $(foreach m,$(LONG_METHODS),$(OUT)/long-s$(FIRST_SEED)/$(m)/manifest.json)
long: $(LONG)
.PHONY: long
define LONG_RUN
$(OUT)/long-s$(FIRST_SEED)/$(1)/manifest.json: | $(LONG_CELL)/$(1)/manifest.json
	$$(call TRAIN_FOR,$$(LONG_STEPS),$$(LONG_EVERY)) --samples $(LONG_CELL)/samples.parquet \
		--scores $(LONG_CELL)/scores.parquet $$(call flags_$(1),$(LONG_CELL)) \
		--lr $$$$($$(TABLE) grid-lr $(LONG_CELL)/$(1)) --seed $(FIRST_SEED) --out $$(@D)
endef
$(foreach m,$(LONG_METHODS),$(eval $(call LONG_RUN,$(m))))

# ---------------------------------------------------------------- train's defaults: only the loss, the inputs, --epochs 3

DEFAULTS := $(foreach s,$(SEEDS),$(foreach m,tb dpg,$(OUT)/n$(SWEEP_N)-s$(s)/defaults-$(m)/manifest.json))
defaults: $(DEFAULTS)
define DEFAULT_RUN
$(OUT)/n$(SWEEP_N)-s%/defaults-$(1)/manifest.json: $(OUT)/n$(SWEEP_N)-s%/z.parquet
	$$(ISWT) train --model $$(MODEL) --samples $(OUT)/n$(SWEEP_N)-s$$*/samples.parquet \
		--scores $(OUT)/n$(SWEEP_N)-s$$*/scores.parquet --z $$< --loss $(1) --epochs 3 --seed $$* \
		--eval-target-every 64 --eval-prompts $$(EVAL_PROMPTS) --out $$(@D)
endef
$(foreach m,tb dpg,$(eval $(call DEFAULT_RUN,$(m))))

clean:
	rm -rf $(OUT)
