"""Known-answer tests for the training losses (iswcli/losses.py).

Every expected number is worked out by hand in the comments next to it; none
is produced by re-running the formula under test. The trajectory-balance
fixed point is checked on an exact categorical toy where
pi* = pi_ref exp(beta r) / Z is computable in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch

from iswcli import losses

F64 = torch.float64


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def close(actual, expected, atol=1e-9):
    actual = torch.as_tensor(actual, dtype=F64)
    expected = torch.as_tensor(expected, dtype=F64)
    assert torch.allclose(actual, expected, atol=atol, rtol=0), f"{actual} != {expected}"


# --------------------------------------------------------------------------
# Trajectory balance: known answers
# --------------------------------------------------------------------------

# Three samples from two prompts (log Z 0.5 for the first two, 1.0 for the third), beta = 2.
TB_LOG_Z = [0.5, 0.5, 1.0]
TB_LOGP = [-2.0, -3.0, -1.5]
TB_REF = [-2.5, -2.0, -2.5]
TB_REWARD = [1.0, 0.0, 0.5]
TB_BETA = 2.0
# log-ratios logp - ref       = [0.5, -1.0, 1.0]
# beta * r                    = [2.0,  0.0, 1.0]
# delta = logZ + ratio - beta r:
#   0.5 + 0.5 - 2.0 = -1.0
#   0.5 - 1.0 - 0.0 = -0.5
#   1.0 + 1.0 - 1.0 =  1.0
TB_DELTA = [-1.0, -0.5, 1.0]


def test_tb_delta_by_hand():
    delta = losses.tb_delta(t(TB_LOG_Z), t(TB_LOGP), t(TB_REF), t(TB_REWARD), TB_BETA)
    close(delta, TB_DELTA)


def test_tb_delta_broadcasts_a_scalar_log_z():
    # one prompt, log Z = 0.5 for all three: third delta becomes 0.5 + 1.0 - 1.0 = 0.5
    delta = losses.tb_delta(t(0.5), t(TB_LOGP), t(TB_REF), t(TB_REWARD), TB_BETA)
    close(delta, [-1.0, -0.5, 0.5])


def test_tb_loss_by_hand():
    delta = t(TB_DELTA).requires_grad_(True)
    loss, parts = losses.tb_loss(delta)
    # mean(delta^2) = (1 + 0.25 + 1) / 3 = 2.25 / 3 = 0.75
    close(loss, 0.75)
    # delta_mean = (-1 - 0.5 + 1) / 3 = -1/6; delta_abs_max = 1
    assert parts["delta_mean"] == pytest.approx(-1.0 / 6.0, abs=1e-12)
    assert parts["delta_abs_max"] == pytest.approx(1.0, abs=1e-12)


def test_tb_loss_gradient_by_hand():
    # d/dlogp mean(delta^2) = 2 * delta / N = 2 * [-1, -0.5, 1] / 3 = [-2/3, -1/3, 2/3]
    logp = t(TB_LOGP).requires_grad_(True)
    loss, _ = losses.tb_loss(losses.tb_delta(t(TB_LOG_Z), logp, t(TB_REF), t(TB_REWARD), TB_BETA))
    loss.backward()
    close(logp.grad, [-2.0 / 3.0, -1.0 / 3.0, 2.0 / 3.0])


def test_tb_log_z_is_frozen_when_given_without_grad():
    logp = t(TB_LOGP).requires_grad_(True)
    log_z = t(TB_LOG_Z)
    loss, _ = losses.tb_loss(losses.tb_delta(log_z, logp, t(TB_REF), t(TB_REWARD), TB_BETA))
    loss.backward()
    assert log_z.grad is None and not log_z.requires_grad


def test_tb_delta_length_normalized_by_hand():
    # lengths [2, 4, 0]; the zero length is clamped to 1.
    # ratio / length = [0.5/2, -1.0/4, 1.0/1] = [0.25, -0.25, 1.0]
    # delta = [0.5 + 0.25 - 2.0, 0.5 - 0.25 - 0.0, 1.0 + 1.0 - 1.0] = [-1.25, 0.25, 1.0]
    lengths = torch.tensor([2, 4, 0])
    delta = losses.tb_delta(t(TB_LOG_Z), t(TB_LOGP), t(TB_REF), t(TB_REWARD), TB_BETA, lengths)
    close(delta, [-1.25, 0.25, 1.0])
    # loss = (1.5625 + 0.0625 + 1.0) / 3 = 2.625 / 3 = 0.875
    loss, _ = losses.tb_loss(delta)
    close(loss, 0.875)


def test_tb_length_normalized_with_unit_lengths_is_the_sequence_form():
    ones = t([1.0, 1.0, 1.0])
    delta = losses.tb_delta(t(TB_LOG_Z), t(TB_LOGP), t(TB_REF), t(TB_REWARD), TB_BETA, ones)
    close(delta, TB_DELTA)


# --------------------------------------------------------------------------
# Trajectory balance: the fixed point on an exact categorical toy
# --------------------------------------------------------------------------

# A closed set of 6 outcomes; the "policy" is a categorical with logits theta.
PI_REF = t([0.30, 0.25, 0.15, 0.12, 0.10, 0.08])
REWARD = t([0.0, 1.0, 0.5, 2.0, -1.0, 1.5])
BETA = 1.5
LOG_REF = PI_REF.log()
# Exact Z = sum_y pi_ref(y) exp(beta r(y)), in log space.
LOG_Z = torch.logsumexp(LOG_REF + BETA * REWARD, dim=0)
LOG_PI_STAR = LOG_REF + BETA * REWARD - LOG_Z
ALL = torch.arange(6)


def _tb_on(theta: torch.Tensor, samples: torch.Tensor, log_z: torch.Tensor = LOG_Z) -> torch.Tensor:
    logp = torch.log_softmax(theta, dim=0)[samples]
    delta = losses.tb_delta(log_z, logp, LOG_REF[samples], REWARD[samples], BETA)
    return losses.tb_loss(delta)[0]


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    return float((log_p.exp() * (log_p - log_q)).sum())


def test_toy_pi_star_is_a_distribution():
    # sanity of the toy: pi* sums to 1 and differs from pi_ref
    close(LOG_PI_STAR.exp().sum(), 1.0, atol=1e-12)
    assert _kl(LOG_PI_STAR, LOG_REF) > 0.1


@pytest.mark.parametrize(
    "samples",
    [ALL, torch.tensor([3]), torch.tensor([0, 2, 2, 5]), torch.tensor([4, 4, 1, 0, 3, 3, 3])],
    ids=["all", "one", "subset", "repeats"],
)
@pytest.mark.parametrize("shift", [0.0, 3.7], ids=["logits=log pi*", "shifted logits"])
def test_tb_loss_and_gradient_vanish_at_pi_star(samples, shift):
    # theta = log pi* (+ any constant: softmax ignores it) gives pi_theta = pi*, so every
    # delta = log Z + log pi* - log pi_ref - beta r = 0, whatever samples are used.
    theta = (LOG_PI_STAR + shift).clone().requires_grad_(True)
    loss = _tb_on(theta, samples)
    (grad,) = torch.autograd.grad(loss, theta)
    assert abs(float(loss.detach())) < 1e-12
    assert torch.allclose(grad, torch.zeros(6, dtype=F64), atol=1e-6)


def test_tb_gradient_does_not_vanish_away_from_pi_star():
    perturb = t([0.3, -0.2, 0.1, 0.0, -0.4, 0.25])
    theta = (LOG_PI_STAR + perturb).clone().requires_grad_(True)
    loss = _tb_on(theta, ALL)
    (grad,) = torch.autograd.grad(loss, theta)
    assert float(loss.detach()) > 1e-3
    assert float(grad.abs().max()) > 1e-2


def test_tb_gradient_at_pi_ref_points_toward_pi_star():
    # At theta = log pi_ref, delta_y = log Z - beta r_y, so the loss pushes up the
    # logit of the highest-reward outcome (index 3, r = 2) and down that of the lowest (4, r = -1).
    theta = LOG_REF.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_tb_on(theta, ALL), theta)
    assert grad[3] < 0 < grad[4]


def test_tb_wrong_log_z_has_no_zero_at_pi_star():
    # With log Z off by 0.3 every delta at pi* is 0 + 0.3: loss = 0.3^2 = 0.09, so an
    # error in the frozen constant shows up as a floor on the loss.
    theta = LOG_PI_STAR.clone().requires_grad_(True)
    loss = _tb_on(theta, ALL, log_z=LOG_Z + 0.3)
    close(loss, 0.09, atol=1e-12)


def test_gradient_descent_on_samples_from_pi_ref_converges_to_pi_star():
    gen = torch.Generator().manual_seed(0)
    samples = torch.multinomial(PI_REF, 2000, replacement=True, generator=gen)
    # every outcome must be seen, otherwise its share of pi* is unconstrained
    assert torch.bincount(samples, minlength=6).min() > 0

    theta = LOG_REF.clone().requires_grad_(True)  # start at pi_theta = pi_ref
    kl_start = _kl(LOG_PI_STAR, torch.log_softmax(theta.detach(), 0))
    for _ in range(500):
        (grad,) = torch.autograd.grad(_tb_on(theta, samples), theta)
        with torch.no_grad():
            theta -= 1.0 * grad  # plain gradient descent
    kl_end = _kl(LOG_PI_STAR, torch.log_softmax(theta.detach(), 0))
    assert kl_start > 0.1
    assert kl_end < 1e-3
    close(torch.softmax(theta.detach(), 0), LOG_PI_STAR.exp(), atol=1e-4)


# --------------------------------------------------------------------------
# Pair losses
# --------------------------------------------------------------------------

PAIR_BETA = 0.5
# (logp_w, ref_w, logp_l, ref_l) for three pairs:
#   A: (-1.0, -1.5, -2.0, -1.0): ratio_w = 0.5,  ratio_l = -1.0 -> diff 1.5  -> h = 0.5 * 1.5 = 0.75
#   B: (-3.0, -2.0, -2.0, -2.0): ratio_w = -1.0, ratio_l = 0.0  -> diff -1.0 -> h = -0.5
#   C: (-1.0, -3.0, -4.0, -3.0): ratio_w = 2.0,  ratio_l = -1.0 -> diff 3.0  -> h = 1.5
LOGP_W = [-1.0, -3.0, -1.0]
REF_W = [-1.5, -2.0, -3.0]
LOGP_L = [-2.0, -2.0, -4.0]
REF_L = [-1.0, -2.0, -3.0]
H = [0.75, -0.5, 1.5]


def test_pair_margin_by_hand():
    h = losses.pair_margin(t(LOGP_W), t(REF_W), t(LOGP_L), t(REF_L), PAIR_BETA)
    close(h, H)


def test_pair_margin_gradient_raises_chosen_and_lowers_rejected():
    # dh/dlogp_w = beta = 0.5, dh/dlogp_l = -beta = -0.5
    logp_w = t(LOGP_W).requires_grad_(True)
    logp_l = t(LOGP_L).requires_grad_(True)
    losses.pair_margin(logp_w, t(REF_W), logp_l, t(REF_L), PAIR_BETA).sum().backward()
    close(logp_w.grad, [0.5, 0.5, 0.5])
    close(logp_l.grad, [-0.5, -0.5, -0.5])


def test_sigmoid_pair_loss_by_hand():
    # -log sigmoid(h) = log(1 + exp(-h)):
    #   h = 0.75: exp(-0.75) = 0.4723665527 -> log(1.4723665527) = 0.3868710061
    #   h = -0.5: exp(0.5)   = 1.6487212707 -> log(2.6487212707) = 0.9740769842
    #   h = 1.5:  exp(-1.5)  = 0.2231301601 -> log(1.2231301601) = 0.2014132780
    loss = losses.pair_loss("sigmoid", t(H), PAIR_BETA)
    close(loss, [0.3868710061, 0.9740769842, 0.2014132780], atol=1e-9)


def test_hinge_pair_loss_by_hand():
    # max(0, 1 - h) = [1 - 0.75, 1 + 0.5, max(0, -0.5)] = [0.25, 1.5, 0]
    close(losses.pair_loss("hinge", t(H), PAIR_BETA), [0.25, 1.5, 0.0])


def test_ipo_pair_loss_by_hand():
    # beta = 0.5: (h / 0.5 - 1 / (2 * 0.5))^2 = (2h - 1)^2
    #   h = 0.75: (1.5 - 1)^2 = 0.25;  h = -0.5: (-1 - 1)^2 = 4;  h = 1.5: (3 - 1)^2 = 4
    close(losses.pair_loss("ipo", t(H), PAIR_BETA), [0.25, 4.0, 4.0])
    # beta = 2: (h / 2 - 1/4)^2 at h = 1.5: (0.75 - 0.25)^2 = 0.25; at h = -0.5: (-0.25 - 0.25)^2 = 0.25
    close(losses.pair_loss("ipo", t([1.5, -0.5]), 2.0), [0.25, 0.25])


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_minimum_is_at_h_one_half(beta):
    # h / beta - 1 / (2 beta) = (h - 1/2) / beta: zero (with zero slope) at h = 1/2 for every beta,
    # i.e. at a log-ratio margin of 1 / (2 beta).
    h = t([0.5]).requires_grad_(True)
    loss = losses.pair_loss("ipo", h, beta)
    loss.sum().backward()
    close(loss, [0.0], atol=1e-12)
    close(h.grad, [0.0], atol=1e-12)
    # either side: ((0.5 +- 0.1) - 0.5)^2 / beta^2 = 0.01 / beta^2
    close(losses.pair_loss("ipo", t([0.4, 0.6]), beta), [0.01 / beta**2] * 2, atol=1e-12)


def test_hinge_is_zero_with_zero_gradient_when_margin_reaches_one():
    h = t([1.0 + 1e-9, 1.5, 10.0]).requires_grad_(True)
    loss = losses.pair_loss("hinge", h, PAIR_BETA)
    loss.sum().backward()
    close(loss, [0.0, 0.0, 0.0])
    close(h.grad, [0.0, 0.0, 0.0])
    close(losses.pair_loss("hinge", t([1.0]), PAIR_BETA), [0.0])
    # below one it is linear with slope -1: h = 0.9 -> 0.1
    close(losses.pair_loss("hinge", t([0.9]), PAIR_BETA), [0.1], atol=1e-12)


def test_sigmoid_at_zero_margin_is_log_two():
    # -log sigmoid(0) = -log(1/2) = log 2; slope -sigmoid(-0) = -1/2
    h = t([0.0]).requires_grad_(True)
    loss = losses.pair_loss("sigmoid", h, PAIR_BETA)
    loss.sum().backward()
    close(loss, [math.log(2.0)])
    close(h.grad, [-0.5])


def test_sigmoid_is_stable_for_large_margins():
    # log(1 + e^100) = 100 + log(1 + e^-100) ~ 100; log(1 + e^-100) ~ e^-100 ~ 0
    loss = losses.pair_loss("sigmoid", torch.tensor([-100.0, 100.0]), PAIR_BETA)
    assert torch.isfinite(loss).all()
    close(loss, [100.0, 0.0], atol=1e-4)


def test_unknown_pair_loss_is_rejected():
    with pytest.raises(ValueError, match="unknown pair loss"):
        losses.pair_loss("dpo", t(H), PAIR_BETA)


# Two prompts: P1 has 2 pairs, P2 has 3 pairs; per-pair losses chosen by hand.
PER_PAIR = [1.0, 3.0, 2.0, 4.0, 6.0]


def test_weighted_pair_loss_is_mean_over_prompts_of_weighted_sums():
    # P1 weights [0.25, 0.75] -> 0.25 * 1 + 0.75 * 3 = 0.25 + 2.25 = 2.5
    # P2 weights [0.5, 0.25, 0.25] -> 0.5 * 2 + 0.25 * 4 + 0.25 * 6 = 1 + 1 + 1.5 = 3.5
    # mean over prompts = (2.5 + 3.5) / 2 = 3.0
    weight = t([0.25, 0.75, 0.5, 0.25, 0.25])
    close(losses.weighted_pair_loss(t(PER_PAIR), weight), 3.0)


def test_weighted_pair_loss_uniform_per_prompt_weights_average_prompts_not_pairs():
    # uniform per prompt: P1 [1/2, 1/2] -> 2.0; P2 [1/3]*3 -> 12/3 = 4.0; mean (2 + 4) / 2 = 3.0,
    # which is not the plain mean over the five pairs (16 / 5 = 3.2)
    weight = t([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])
    close(losses.weighted_pair_loss(t(PER_PAIR), weight), 3.0)


def test_weighted_pair_loss_with_unit_weights_is_the_plain_mean():
    # (1 + 3 + 2 + 4 + 6) / 5 = 16 / 5 = 3.2
    close(losses.weighted_pair_loss(t(PER_PAIR), torch.ones(5, dtype=F64)), 3.2)


def test_weighted_pair_loss_zero_weight_pair_does_not_count():
    # P1 [1, 0] -> 1.0; P2 [0.5, 0.5, 0] -> 1 + 2 = 3.0; (1 + 3) / 2 = 2.0
    weight = t([1.0, 0.0, 0.5, 0.5, 0.0])
    close(losses.weighted_pair_loss(t(PER_PAIR), weight), 2.0)


def test_weighted_sigmoid_loss_end_to_end_by_hand():
    # pairs A, B from one prompt (weights 0.25, 0.75), pair C alone in a second prompt (weight 1):
    # prompt 1: 0.25 * 0.3868710061 + 0.75 * 0.9740769842 = 0.0967177515 + 0.7305577382 = 0.8272754897
    # prompt 2: 0.2014132780
    # mean: (0.8272754897 + 0.2014132780) / 2 = 0.5143443838
    h = losses.pair_margin(t(LOGP_W), t(REF_W), t(LOGP_L), t(REF_L), PAIR_BETA)
    loss = losses.weighted_pair_loss(losses.pair_loss("sigmoid", h, PAIR_BETA), t([0.25, 0.75, 1.0]))
    close(loss, 0.5143443838, atol=1e-9)


# --------------------------------------------------------------------------
# Clipped policy loss (GRPO token level, GSPO sequence level)
# --------------------------------------------------------------------------

EPS = 0.2  # clip range [0.8, 1.2]
JUNK = 7.0  # padding value: must be masked out


def _rows(log_ratios, logq, mask):
    """token_logp = logq + log-ratio on real tokens, a junk value on padding."""
    logq = t(logq)
    mask = t(mask)
    logp = torch.where(mask.bool(), logq + t(log_ratios), t(JUNK))
    return logp, logq, mask


# Token level: two sequences, width 4.
#   seq 0: 4 tokens, A = +1, ratios [1.1, 1.5, 0.5, 1.0]
#   seq 1: 2 tokens + 2 padding, A = -2, ratios [1.5, 0.5]
L = math.log
TOK_LOGP, TOK_LOGQ, TOK_MASK = _rows(
    [[L(1.1), L(1.5), L(0.5), 0.0], [L(1.5), L(0.5), 0.0, 0.0]],
    [[-1.0, -2.0, -0.5, -3.0], [-1.2, -0.7, -0.1, -4.0]],
    [[1, 1, 1, 1], [1, 1, 0, 0]],
)
TOK_ADV = t([1.0, -2.0])


def test_token_level_clipped_loss_by_hand():
    loss, parts = losses.clipped_policy_loss(TOK_LOGP, TOK_LOGQ, TOK_MASK, TOK_ADV, EPS, "token")
    # seq 0 (A = 1): clipped ratios [1.1, 1.2, 0.8, 1.0]
    #   min(r A, c A) = [min(1.1, 1.1), min(1.5, 1.2), min(0.5, 0.8), min(1, 1)] = [1.1, 1.2, 0.5, 1.0]
    #   mean over 4 tokens = 3.8 / 4 = 0.95
    # seq 1 (A = -2): clipped ratios [1.2, 0.8]
    #   r A = [-3.0, -1.0], c A = [-2.4, -1.6] -> min = [-3.0, -1.6]
    #   mean over 2 tokens = -4.6 / 2 = -2.3
    # objective = (0.95 - 2.3) / 2 = -0.675 -> loss = 0.675
    close(loss, 0.675)
    # outside [0.8, 1.2]: seq 0 tokens 1, 2; seq 1 tokens 0, 1 -> 4 of 6 real tokens
    assert parts["clip_frac"] == pytest.approx(4 / 6)


def test_token_level_clipped_gradient_by_hand():
    # d loss / d logp_t = -(1/N)(1/L_i) * d min(...)/d logp_t; the unclipped branch gives r_t A_i,
    # the clipped branch 0 (and at r = 1 both branches agree, total r A).
    #   seq 0 (N = 2, L = 4): token 0: -1.1 / 8 = -0.1375; token 1 clipped: 0;
    #                         token 2: -0.5 / 8 = -0.0625; token 3: -1.0 / 8 = -0.125
    #   seq 1 (N = 2, L = 2): token 0: -(1.5 * -2) / 4 = 0.75; token 1 clipped: 0; padding: 0
    logp = TOK_LOGP.clone().requires_grad_(True)
    loss, _ = losses.clipped_policy_loss(logp, TOK_LOGQ, TOK_MASK, TOK_ADV, EPS, "token")
    loss.backward()
    close(logp.grad, [[-0.1375, 0.0, -0.0625, -0.125], [0.75, 0.0, 0.0, 0.0]])


def test_token_level_padding_values_do_not_matter():
    other = torch.where(TOK_MASK.bool(), TOK_LOGP, t(-55.0))
    a, _ = losses.clipped_policy_loss(TOK_LOGP, TOK_LOGQ, TOK_MASK, TOK_ADV, EPS, "token")
    b, _ = losses.clipped_policy_loss(other, TOK_LOGQ, TOK_MASK, TOK_ADV, EPS, "token")
    close(a, b, atol=1e-12)


# Sequence level: four sequences, width 3; per-token log-ratios vary but their mean over real
# tokens is the log of a round number, so the sequence ratio exp(mean) is that number.
#   seq 0: 3 tokens, mean log-ratio log 1.5, A = +1
#   seq 1: 2 tokens, mean log-ratio log 0.5, A = -1
#   seq 2: 1 token,  log-ratio log 1.1,      A = +2
#   seq 3: 3 tokens, mean log-ratio log 1.5, A = -1
SEQ_LOGP, SEQ_LOGQ, SEQ_MASK = _rows(
    [
        [L(1.5) + 0.3, L(1.5) - 0.5, L(1.5) + 0.2],
        [L(0.5) + 0.4, L(0.5) - 0.4, 0.0],
        [L(1.1), 0.0, 0.0],
        [L(1.5) - 0.1, L(1.5) + 0.6, L(1.5) - 0.5],
    ],
    [[-1.0, -2.0, -0.5], [-0.3, -1.1, -2.0], [-0.9, -1.0, -1.0], [-2.2, -0.4, -1.3]],
    [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]],
)
SEQ_ADV = t([1.0, -1.0, 2.0, -1.0])


def test_sequence_level_clipped_loss_by_hand():
    loss, parts = losses.clipped_policy_loss(SEQ_LOGP, SEQ_LOGQ, SEQ_MASK, SEQ_ADV, EPS, "sequence")
    # seq 0: r = 1.5, c = 1.2, A = +1: min(1.5, 1.2)   =  1.2
    # seq 1: r = 0.5, c = 0.8, A = -1: min(-0.5, -0.8) = -0.8
    # seq 2: r = 1.1, c = 1.1, A = +2: 2.2
    # seq 3: r = 1.5, c = 1.2, A = -1: min(-1.5, -1.2) = -1.5
    # objective = (1.2 - 0.8 + 2.2 - 1.5) / 4 = 1.1 / 4 = 0.275 -> loss = -0.275
    close(loss, -0.275)
    # sequences 0, 1, 3 have ratios outside [0.8, 1.2]
    assert parts["clip_frac"] == pytest.approx(3 / 4)


def test_sequence_level_clipped_gradient_by_hand():
    # d r / d logp_t = r / L_i on real tokens. Clipped branch chosen: seqs 0 and 1 -> 0.
    # seq 2 (L = 1): -(1/4) * A r / L = -(1/4) * 2 * 1.1 = -0.55
    # seq 3 (L = 3): -(1/4) * (-1) * 1.5 / 3 = 0.125 on each of its tokens
    logp = SEQ_LOGP.clone().requires_grad_(True)
    loss, _ = losses.clipped_policy_loss(logp, SEQ_LOGQ, SEQ_MASK, SEQ_ADV, EPS, "sequence")
    loss.backward()
    close(logp.grad, [[0, 0, 0], [0, 0, 0], [-0.55, 0, 0], [0.125, 0.125, 0.125]])


# On-policy start: logp == logq on real tokens (padding junk differs).
ON_LOGQ = t([[-1.0, -2.0, -0.5, -0.2], [-0.3, -1.1, 0.0, 0.0], [-0.9, 0.0, 0.0, 0.0]])
ON_MASK = t([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
ON_LOGP = torch.where(ON_MASK.bool(), ON_LOGQ, t(JUNK))
ON_ADV = t([1.0, -2.0, 0.5])
# Unclipped policy gradient of -(1/N) sum_i A_i mean_t log pi(y_it), N = 3:
#   seq 0 (L = 4): -1 / 12 per token; seq 1 (L = 2): 2 / 6 = 1/3 per token; seq 2 (L = 1): -0.5 / 3 = -1/6
ON_GRAD = [[-1 / 12] * 4, [1 / 3, 1 / 3, 0, 0], [-1 / 6, 0, 0, 0]]


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_on_policy_loss_is_minus_mean_advantage(level):
    # every ratio is 1: objective_i = A_i, loss = -(1 - 2 + 0.5) / 3 = 0.5 / 3 = 1/6
    loss, parts = losses.clipped_policy_loss(ON_LOGP, ON_LOGQ, ON_MASK, ON_ADV, EPS, level)
    close(loss, 1 / 6)
    assert parts["clip_frac"] == 0.0


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_on_policy_gradient_is_the_unclipped_policy_gradient(level):
    logp = ON_LOGP.clone().requires_grad_(True)
    loss, _ = losses.clipped_policy_loss(logp, ON_LOGQ, ON_MASK, ON_ADV, EPS, level)
    loss.backward()
    close(logp.grad, ON_GRAD)


# --------------------------------------------------------------------------
# KL to the reference, SFT
# --------------------------------------------------------------------------


def test_kl_to_reference_is_zero_at_the_reference():
    logp = t([-1.0, -2.5, -0.3])
    close(losses.kl_to_reference(logp, logp.clone()), 0.0, atol=1e-15)


def test_kl_to_reference_is_positive_otherwise_by_hand():
    # d = ref - theta = [0, 0.5, -1]; exp(d) - d - 1 = [0, e^0.5 - 1.5, e^-1 + 1 - 1]
    #   = [0, 1.6487212707 - 1.5, 0.3678794412] = [0, 0.1487212707, 0.3678794412]
    # mean = 0.5166007119 / 3 = 0.1722002373
    logp = t([-1.0, -2.0, -1.0])
    ref = t([-1.0, -1.5, -2.0])
    kl = losses.kl_to_reference(logp, ref)
    assert float(kl) > 0
    close(kl, 0.1722002373, atol=1e-9)
    # any single mismatch is positive
    for delta in (-3.0, -0.01, 0.01, 3.0):
        assert float(losses.kl_to_reference(t([0.0]), t([delta]))) > 0


def test_kl_to_reference_averages_to_kl_theta_to_ref():
    # pi_theta = [1/2, 1/4, 1/4], pi_ref = [1/8, 3/8, 1/2]; samples [0, 0, 1, 2] are exactly
    # pi_theta-proportional, so the sample mean is the expectation under pi_theta.
    # ref/theta = [1/4, 3/2, 2]; k3 = r - 1 - log r:
    #   0.25 - 1 + 1.3862943611 = 0.6362943611
    #   1.5  - 1 - 0.4054651081 = 0.0945348919
    #   2    - 1 - 0.6931471806 = 0.3068528194
    # mean = (2 * 0.6362943611 + 0.0945348919 + 0.3068528194) / 4 = 1.6739764335 / 4 = 0.4184941084
    # = KL(pi_theta || pi_ref) = 0.5 log 4 + 0.25 log(2/3) + 0.25 log(1/2)
    # (KL(pi_ref || pi_theta) would be 0.3253...)
    theta = t([0.5, 0.25, 0.25]).log()
    ref = t([0.125, 0.375, 0.5]).log()
    samples = torch.tensor([0, 0, 1, 2])
    close(losses.kl_to_reference(theta[samples], ref[samples]), 0.4184941084, atol=1e-9)


def test_sft_loss_is_token_mean_nll_by_hand():
    # real tokens: [-1, -2, -3] and [-0.5]; padding (junk 9.0) masked out
    # NLL = (1 + 2 + 3 + 0.5) / 4 = 6.5 / 4 = 1.625
    token_logp = t([[-1.0, -2.0, -3.0], [-0.5, 9.0, 9.0]]).requires_grad_(True)
    mask = t([[1, 1, 1], [1, 0, 0]])
    loss = losses.sft_loss(token_logp, mask)
    close(loss, 1.625)
    # gradient: -1/4 on each real token, 0 on padding
    loss.backward()
    close(token_logp.grad, [[-0.25, -0.25, -0.25], [-0.25, 0.0, 0.0]])


def test_weighted_pair_loss_with_the_artifact_mean_weight_keeps_weights_on_single_pairs():
    # two prompts: A has pairs with weights 0.75, 0.25; B one pair with weight 1 -> mean weight 2/3.
    # Full objective: mean over prompts of per-prompt sums = ((0.75*1 + 0.25*3) + 1*2) / 2 = 1.75.
    losses_ = torch.tensor([1.0, 3.0, 2.0])
    weights = torch.tensor([0.75, 0.25, 1.0])
    mean_w = 2.0 / 3.0
    singles = [losses.weighted_pair_loss(losses_[i : i + 1], weights[i : i + 1], mean_w) for i in range(3)]
    # one pair per micro-batch: 0.75*1/(2/3) = 1.125, 0.25*3/(2/3) = 1.125, 1*2/(2/3) = 3.0
    assert [round(float(v), 6) for v in singles] == [1.125, 1.125, 3.0]
    # their average over the epoch is the full objective: (1.125 + 1.125 + 3.0) / 3 = 1.75
    assert float(sum(singles) / 3) == pytest.approx(1.75)
    assert float(losses.weighted_pair_loss(losses_, weights, mean_w)) == pytest.approx(1.75)


# --------------------------------------------------------------------------- dpg


def test_dpg_loss_and_weights_by_hand():
    # w = exp(beta r + ref - q - log Z): beta 1, log Z = log 2
    # sample 1: r 0, ref log .5, q log .5 -> w = 1/2;  sample 2: r log 3, ref log .25, q log .5 -> w = 3*.5/2 = 3/4
    logp = t([math.log(0.4), math.log(0.2)]).requires_grad_()
    ref, q = t([math.log(0.5), math.log(0.25)]), t([math.log(0.5), math.log(0.5)])
    reward, log_z = t([0.0, math.log(3)]), t([math.log(2), math.log(2)])
    loss, parts = losses.dpg_loss(logp, ref, q, reward, log_z, beta=1.0, baseline=False)
    # -(0.5 log 0.4 + 0.75 log 0.2) / 2
    close(loss, -(0.5 * math.log(0.4) + 0.75 * math.log(0.2)) / 2)
    assert parts["weight_mean"] == pytest.approx(0.625) and parts["weight_max"] == pytest.approx(0.75)
    loss.backward()
    close(logp.grad, [-0.25, -0.375])  # -w / n


def test_dpg_baseline_keeps_the_value_and_subtracts_pi_theta_over_q():
    logp = t([math.log(0.4), math.log(0.2)]).requires_grad_()
    ref, q = t([math.log(0.5), math.log(0.25)]), t([math.log(0.5), math.log(0.5)])
    reward, log_z = t([0.0, math.log(3)]), t([math.log(2), math.log(2)])
    plain, _ = losses.dpg_loss(logp, ref, q, reward, log_z, beta=1.0, baseline=False)
    loss, _ = losses.dpg_loss(logp, ref, q, reward, log_z, beta=1.0, baseline=True)
    close(loss, plain)
    loss.backward()
    # -(w - pi_theta/q) / n: pi_theta/q = 0.8 and 0.4
    close(logp.grad, [-(0.5 - 0.8) / 2, -(0.75 - 0.4) / 2])


def test_dpg_per_sample_gradient_vanishes_at_pi_star_with_the_baseline():
    pi_ref, r, q = t([0.5, 0.3, 0.2]), t([1.0, 0.0, 2.0]), t([0.2, 0.5, 0.3])
    pi_star = pi_ref * r.exp() / (pi_ref * r.exp()).sum()
    log_z = (pi_ref * r.exp()).sum().log().expand(3)
    logp = pi_star.log().requires_grad_()
    loss, _ = losses.dpg_loss(logp, pi_ref.log(), q.log(), r, log_z, beta=1.0, baseline=True)
    loss.backward()
    close(logp.grad, [0.0, 0.0, 0.0])


def test_dpg_fixed_point_is_pi_star_on_every_outcome_once():
    """Softmax logits trained on each outcome once (weights pi*/q) converge to pi*."""
    pi_ref, r, q = t([0.5, 0.3, 0.2]), t([1.0, 0.0, 2.0]), t([1 / 3] * 3)
    pi_star = pi_ref * r.exp() / (pi_ref * r.exp()).sum()
    log_z = (pi_ref * r.exp()).sum().log().expand(3)
    logits = torch.zeros(3, dtype=F64, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        loss, _ = losses.dpg_loss(logits.log_softmax(-1), pi_ref.log(), q.log(), r, log_z, beta=1.0)
        loss.backward()
        opt.step()
    close(logits.softmax(-1), pi_star, atol=1e-6)


# --------------------------------------------------------------------------- step-0 residuals and divergence


def test_tb_step0_residuals_are_log_mean_exp_minus_mean_by_hand():
    import numpy as np

    # prompt 0: rewards 0, 1 at beta 1, IS log Z = log((1 + e) / 2); residual = log((1+e)/2) - 0.5
    # prompt 1: rewards 2, 2: log Z = 2, residual 0 (no spread, no Jensen gap)
    reward, index = np.array([0.0, 1.0, 2.0, 2.0]), np.array([0, 0, 1, 1])
    log_z = np.array([math.log((1 + math.e) / 2), 2.0])
    residual = losses.tb_step0_residuals(log_z, reward, 1.0, index)
    assert residual == pytest.approx([math.log((1 + math.e) / 2) - 0.5, 0.0])
    assert residual[0] > 0


def test_divergence_is_a_sustained_rise_past_three_times_the_start():
    from iswcli.train_steps import diverging

    assert not diverging([1.0] * 39)  # too short to judge a trend
    assert not diverging([1.0] * 20 + [2.9] * 20)
    assert diverging([1.0] * 20 + [3.1] * 20)
    assert not diverging([1.0] * 39 + [40.0])  # one spike is not a trend
    assert diverging([1.0, float("nan")])  # a non-finite loss diverged at once
    assert not diverging([0.0] * 20 + [0.1] * 20)  # a start near 0: the floor, not a hair trigger
    assert diverging([0.0] * 20 + [0.2] * 20)
    # by-prompt batches: dpg's losses at lr 1e-4 on the sets task, a run that halved kl_set
    dpg = [2.14, 1.83, 1.32, 7.21, 7.66, 1.84, 1.88, 1.57, 10.7, 19.79, 26.2, 34.94, 9.08, 7.85, 4.46, 6.1]
    dpg += [2.75, 1.58, 4.35, 8.6, 3.67, 0.94, 2.28, 0.95, 3.29, 5.21, 2.68, 6.16, 2.93, 2.94, 1.92, 3.27, 9.77]
    dpg += [3.04, 2.38, 3.7, 13.74, 5.11, 3.32, 4.62, 5.56, 4.22, 7.5, 13.24, 3.76, 2.95, 2.31, 2.42]
    assert not any(diverging(dpg[: i + 1]) for i in range(len(dpg)))


def test_a_loss_that_explodes_inside_its_first_window_is_diverging():
    from iswcli.train_steps import diverging

    assert diverging([0.6, 145.0, 1.7e5, 4.6e4, 6.8e5])  # lr 3 on the toy: the first window is already lost
    assert not diverging([0.6, 2.0, 0.3, 5.0, 1.0])
