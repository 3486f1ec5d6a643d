"""minivbon.dpo: DPO on Best-of-n's best and worst, against enumeration of the n draws and on the string world."""
import itertools
import math

import pytest
import torch

from minivbon import distill, expected_reward, kl_divergence
from minivbon.dpo import dpo_loss, dpo_objective
from minivbon.loop import TrainConfig, train
from minivbon.toy import TabularPolicy, make_world


def small_world():
    return make_world(num_prompts=2, vocab=3, length=2, seed=3)  # 9 strings per prompt, no tied rewards


def test_dpo_objective_matches_enumerating_the_n_draws():
    world, n, beta = small_world(), 3, 0.7
    log_pi, r = world.ref_log_probs(), world.rewards_all()  # (P, S)
    g = torch.Generator().manual_seed(0)
    log_q = torch.log_softmax(torch.randn(log_pi.shape, generator=g, dtype=torch.float64), -1)
    got = dpo_objective(log_q, log_pi, distill.best_worst_probs(log_pi.exp(), r, n), beta)
    u = log_q - log_pi
    for p in range(2):
        want = 0.0
        for draws in itertools.product(range(9), repeat=n):  # every ordered n-tuple of reference draws
            prob = math.prod(log_pi[p, y].exp().item() for y in draws)
            best = max(draws, key=lambda y: r[p, y].item())
            worst = min(draws, key=lambda y: r[p, y].item())
            want += prob * -torch.nn.functional.logsigmoid(beta * (u[p, best] - u[p, worst])).item()
        assert got[p].item() == pytest.approx(want, rel=1e-12)


def test_dpo_objective_is_log2_at_the_reference_and_falls_to_its_infimum():
    world, n, beta = small_world(), 4, 0.5
    log_pi, r = world.ref_log_probs(), world.rewards_all()
    pairs = distill.best_worst_probs(log_pi.exp(), r, n)
    at_ref = dpo_objective(log_pi, log_pi, pairs, beta)
    assert torch.allclose(at_ref, torch.full_like(at_ref, math.log(2)))
    infimum = (log_pi.exp() ** n).sum(-1) * math.log(2)  # the pairs that are one string drawn n times
    values = []
    for scale in (1.0, 10.0, 100.0):  # q ~ pi exp(scale * rank of r): mass moves up the reward order
        log_q = torch.log_softmax(log_pi + scale * r.argsort(-1).argsort(-1), -1)
        values.append(dpo_objective(log_q, log_pi, pairs, beta))
    assert (values[0] < at_ref).all() and (values[1] < values[0]).all() and (values[2] < values[1]).all()
    assert (values[1] > infimum).all() and torch.allclose(values[2], infimum, atol=1e-9)


def test_dpo_loss_estimates_the_objective_without_bias():
    world, n, beta = small_world(), 4, 0.5
    ref = world.reference("prefix")
    g = torch.Generator().manual_seed(0)
    policy = TabularPolicy(ref.logits + 0.5 * torch.randn(ref.logits.shape, generator=g, dtype=torch.float64),
                           3, 2).requires_grad_(False)
    reward = lambda s: world.reward(s.prompt_ids, s.tokens)  # noqa: E731
    prompts = [0, 1] * 10_000
    best, worst, _ = distill.best_and_worst_of_n(ref, prompts, n, reward, g)
    lq_w, lq_l = policy.token_log_probs(best).sum(-1), policy.token_log_probs(worst).sum(-1)
    lp_w, lp_l = ref.token_log_probs(best).sum(-1), ref.token_log_probs(worst).sum(-1)
    per_pair = -torch.nn.functional.logsigmoid(beta * ((lq_w - lp_w) - (lq_l - lp_l)))  # (P,)
    loss, stats = dpo_loss(policy, ref, best, worst, beta)
    assert loss.item() == pytest.approx(per_pair.mean().item(), rel=1e-9)
    exact = dpo_objective(policy.log_probs_all(world.strings), world.ref_log_probs(),
                          distill.best_worst_probs(world.ref_log_probs().exp(), world.rewards_all(), n), beta).mean()
    assert abs(loss.item() - exact.item()) < 4 * per_pair.std().item() / math.sqrt(len(prompts))


def test_dpo_loss_refuses_mismatched_pairs_and_bad_beta():
    world = small_world()
    ref = world.reference("prefix")
    g = torch.Generator().manual_seed(0)
    a, b = ref.sample([0, 1], g), ref.sample([1, 0], g)
    with pytest.raises(ValueError, match="same prompts"):
        dpo_loss(ref, ref, a, b, 0.5)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(ref, ref, a, a, 0.0)


def test_dpo_trained_by_the_loop_runs_towards_its_infimum_past_bon():
    """DPO on best-against-worst pairs has no finite optimum: training lowers the exact loss towards
    sum pi^n log 2 and carries q past Best-of-n, to a higher reward at a larger KL from pi."""
    world, n, beta = small_world(), 4, 1 / 3
    ref = world.reference("prefix")
    reward = lambda s: world.reward(s.prompt_ids, s.tokens)  # noqa: E731
    config = TrainConfig(method="dpo", n=n, k=4, prompts_per_step=16, steps=300, lr=0.1, max_grad_norm=None)
    log_pi, r = world.ref_log_probs(), world.rewards_all()
    pairs = distill.best_worst_probs(log_pi.exp(), r, n)
    exact = lambda q: {"dpo": dpo_objective(q.log_probs_all(world.strings), log_pi, pairs, beta).mean().item(),  # noqa: E731
                       **world.exact_metrics(q, n)}
    trainer = train(TabularPolicy(ref.logits.clone(), 3, 2), ref, [0, 1], reward, config, evaluate=exact,
                    progress=False)
    start, end = trainer.history[0], trainer.history[-1]
    infimum = ((log_pi.exp() ** n).sum(-1) * math.log(2)).mean().item()
    assert start["dpo"] == pytest.approx(math.log(2))
    assert end["dpo"] - infimum < 0.2 * (start["dpo"] - infimum), (start["dpo"], end["dpo"], infimum)
    bon = world.bon_probs(n)
    assert end["exact_reward"] > expected_reward(bon, r).mean().item() + 0.2
    assert end["kl_to_ref"] > kl_divergence(bon, log_pi.exp()).mean().item() + 0.5
