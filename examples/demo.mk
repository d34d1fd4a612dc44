# The demo: distribution matching with an exact target, on answer-set prompts (--task sets).
#
# Every prompt asks for one member of a small closed set ("Name a day of the week. Weekend days are the
# best answers.") and lists its rewarded answers, so the target pi* = pi_ref e^{beta r} / Z is computed
# exactly by teacher forcing, and so is how far each trained policy is from it.
#
#   offline anchoring (DISA):  sample -> score -> estimate-z -> train --loss tb (frozen IS log Z)
#   forward KL (dpg):          the same samples and z -> train --loss dpg (importance-weighted likelihood)
#   reward maximization:       the same samples -> train --loss grpo (one round: its samples are on-policy)
#   then:                      evaluate base, disa, dpg and grpo with --target-beta -> report -> compare
#
# The last screen puts the three policies side by side: p_valid (mass on the listed answers),
# kl_set (KL(pi* || policy) over the answers plus "anything else", 0 = the target exactly) and
# eff_answers (how many answers the policy really spreads over) next to the target's values.
#
#   make -f examples/demo.mk                      # embedded SmolLM2-135M, CPU friendly
#   make -f examples/demo.mk MODEL=./my-model N=16 EPOCHS=3 OUT=runs/demo
#
# Every step is a file target and every iswt stage also skips itself when its output is up to date,
# so re-running after an interruption redoes only what is missing.

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= demo-out
TASK ?= sets
LIMIT ?= 16
N ?= 8
TOKENS ?= 8
REWARD ?= set
BETA ?= 2
# train's own defaults (lr 1e-4, warm-up over a tenth of the steps, batch 8): 3 epochs of 16 steps
EPOCHS ?= 3
# The exact measures need no samples at all; the few drawn per prompt feed the sampled columns (mean reward).
# Evaluated on the training prompts: how close each loss brings the policy to its target where it was
# trained (the exact target is a distribution, so this is not a memorization score).
EVAL_SPLIT ?= train
EVAL_LIMIT ?= 16
EVAL_N ?= 2
SEED ?= 0

SAMPLES := $(OUT)/samples.parquet
SCORES := $(OUT)/scores.parquet
Z := $(OUT)/z.parquet
POLICIES := base disa dpg grpo
EVALS := $(POLICIES:%=$(OUT)/eval-%.parquet)
TRAIN_FLAGS = --model $(MODEL) --samples $(SAMPLES) --scores $(SCORES) --epochs $(EPOCHS) --seed $(SEED)
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split $(EVAL_SPLIT) --limit $(EVAL_LIMIT) --n $(EVAL_N) \
	--max-new-tokens $(TOKENS) --reward $(REWARD) --target-beta $(BETA) --seed $(SEED)

.PHONY: all compare clean
all: $(OUT)/report.html compare
	@echo "report: $(OUT)/report.html"

$(SAMPLES):
	$(ISWT) sample --model $(MODEL) --task $(TASK) --split train --limit $(LIMIT) --n $(N) \
		--max-new-tokens $(TOKENS) --seed $(SEED) --out $@

$(SCORES): $(SAMPLES)
	$(ISWT) score --samples $< --reward $(REWARD) --out $@

# The sampler is the reference at temperature 1 without truncation, so log pi_ref - log q = 0.
$(Z): $(SAMPLES) $(SCORES)
	$(ISWT) estimate-z --proposal $(SAMPLES) --scores $(SCORES) --beta $(BETA) --bootstrap 200 \
		--seed $(SEED) --out $@ --plot $(OUT)/z.png

$(OUT)/disa/manifest.json: $(Z)
	$(ISWT) train $(TRAIN_FLAGS) --loss tb --z $(Z) --out $(OUT)/disa

$(OUT)/dpg/manifest.json: $(Z)
	$(ISWT) train $(TRAIN_FLAGS) --loss dpg --z $(Z) --out $(OUT)/dpg

$(OUT)/grpo/manifest.json: $(SAMPLES) $(SCORES)
	$(ISWT) train $(TRAIN_FLAGS) --loss grpo --out $(OUT)/grpo

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-%.parquet: $(OUT)/%/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/$* --out $@

$(OUT)/report.html: $(EVALS) $(Z)
	$(ISWT) report $(OUT) --out $@

compare: $(EVALS)
	$(ISWT) evaluate --compare $(EVALS)

clean:
	rm -rf $(OUT)
