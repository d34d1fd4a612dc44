# The demo: both iswt methods on one set of offline samples, evaluated and reported.
#
#   offline anchoring:   sample -> score -> estimate-z -> train --loss tb (frozen log Z)
#   preference (ISO):    sample -> score -> weight-pairs --method iso -> train --loss sigmoid
#   then:                evaluate base, tb and iso policies -> judge-diversity -> report
#
#   make -f examples/demo.mk                      # embedded SmolLM2-135M, small sizes (CPU friendly)
#   make -f examples/demo.mk MODEL=./my-model LIMIT=256 N=16 EVAL_LIMIT=200 OUT=runs/demo
#
# Every step is a file target and every iswt stage also skips itself when its
# output is up to date, so re-running after an interruption redoes only what is missing.

ISWT ?= iswt
MODEL ?= smollm2-135m
OUT ?= demo-out
TASK ?= arith:1
LIMIT ?= 8
N ?= 6
TOKENS ?= 80
REWARD ?= math:graded
BETA ?= 4
GAMMA ?= 0.5
MAX_PAIRS ?= 4
DPO_BETA ?= 0.1
LR ?= 3e-4
EPOCHS ?= 1
BATCH ?= 8
EVAL_LIMIT ?= 8
EVAL_N ?= 4
# Graded on purpose: Mean@k and pass@k still count exact answers only (correct = reward >= 1),
# while the mean graded reward still separates policies that are never exactly right.
EVAL_REWARD ?= math:graded
JUDGE ?= $(MODEL)
JUDGE_TOKENS ?= 64
SEED ?= 0

SAMPLES := $(OUT)/samples.parquet
SCORES := $(OUT)/scores.parquet
Z := $(OUT)/z.parquet
PAIRS := $(OUT)/pairs.parquet
POLICIES := base tb iso
EVALS := $(POLICIES:%=$(OUT)/eval-%.parquet)
DIVERSITY := $(POLICIES:%=$(OUT)/diversity-%.parquet)
TRAIN_FLAGS = --model $(MODEL) --samples $(SAMPLES) --scores $(SCORES) --lr $(LR) --epochs $(EPOCHS) \
	--batch-size $(BATCH) --seed $(SEED)
EVAL_FLAGS = --model $(MODEL) --task $(TASK) --split test --limit $(EVAL_LIMIT) --n $(EVAL_N) \
	--max-new-tokens $(TOKENS) --reward $(EVAL_REWARD) --seed $(SEED)

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

$(OUT)/tb/manifest.json: $(Z)
	$(ISWT) train $(TRAIN_FLAGS) --loss tb --z $(Z) --beta $(BETA) --out $(OUT)/tb

$(PAIRS): $(SAMPLES) $(SCORES)
	$(ISWT) weight-pairs --samples $(SAMPLES) --scores $(SCORES) --method iso --gamma $(GAMMA) \
		--max-pairs-per-prompt $(MAX_PAIRS) --seed $(SEED) --out $@

$(OUT)/iso/manifest.json: $(PAIRS)
	$(ISWT) train $(TRAIN_FLAGS) --loss sigmoid --pairs $(PAIRS) --beta $(DPO_BETA) --out $(OUT)/iso

$(OUT)/eval-base.parquet:
	$(ISWT) evaluate $(EVAL_FLAGS) --out $@

$(OUT)/eval-%.parquet: $(OUT)/%/manifest.json
	$(ISWT) evaluate $(EVAL_FLAGS) --adapter $(OUT)/$* --out $@

$(OUT)/diversity-%.parquet: $(OUT)/eval-%.parquet
	$(ISWT) judge-diversity --samples $< --judge $(JUDGE) --max-new-tokens $(JUDGE_TOKENS) --out $@

$(OUT)/report.html: $(EVALS) $(DIVERSITY) $(Z) $(PAIRS)
	$(ISWT) report $(OUT) --out $@

compare: $(EVALS) $(DIVERSITY)
	$(ISWT) evaluate --compare $(EVALS)
	$(ISWT) judge-diversity --compare $(DIVERSITY)

clean:
	rm -rf $(OUT)
