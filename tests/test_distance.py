"""minivbon.distance: both KL estimators against exact enumeration on the string world, BoN groups against
brute force, the method objectives, and the local LM's pools."""
import math

import pytest
import torch

import minivbon as mv
from minivbon import distance
from minivbon.toy import TabularPolicy

PROMPTS = 6


@pytest.fixture(scope="module")
def world(make_toy):
    world, ref, reward_fn, _ = make_toy(PROMPTS, 4, 5, 1)
    g = torch.Generator().manual_seed(1)
    noise = 0.5 * torch.randn(world.ref_logits.shape, generator=g, dtype=torch.float64)
    q = TabularPolicy.from_first_order(world.ref_logits + noise, "previous").requires_grad_(False)
    return world, ref, reward_fn, q


def exact_kls(world, q, n):
    """Per prompt, by enumeration: KL(q || pi_bon) and KL(pi_bon || q), each (P,)."""
    bon = world.bon_probs(n)
    log_q = q.log_probs_all(world.strings).double()
    return mv.kl_divergence(log_q.exp(), bon), (bon * (bon.log() - log_q)).sum(-1)


@pytest.mark.parametrize("n", [2, 4, 16])
def test_both_kl_estimators_match_exact_enumeration_within_their_standard_error(world, n):
    world, ref, reward_fn, q = world
    prompts = list(range(PROMPTS))
    cdf = mv.reference_cdf(ref, prompts, reward_fn, 1000, torch.Generator().manual_seed(2))
    pool = distance.draw_pool(ref, prompts, 64 * n, reward_fn, torch.Generator().manual_seed(3))
    d = distance.bon_distances(q, ref, prompts, reward_fn, cdf, n, pool, samples_per_prompt=2000, bon_per_prompt=64,
                               generator=torch.Generator().manual_seed(4))
    for name, exact in zip(["kl_to_bon", "kl_from_bon"], exact_kls(world, q, n)):
        error, se = distance.mean_se(d[name] - exact)  # per-prompt differences: only the sampling noise is left
        assert abs(error) < 3 * se + 0.02 * exact.mean().item(), (name, n, error, se)
        assert 0 < se < 0.1 * exact.mean().item()  # the estimate is informative, not noise


def test_the_reference_s_own_distance_is_kl_pi_pi_bon(world):
    world, ref, reward_fn, _ = world
    prompts = list(range(PROMPTS))
    cdf = mv.reference_cdf(ref, prompts, reward_fn, 1000, torch.Generator().manual_seed(2))
    pool = distance.draw_pool(ref, prompts, 64, reward_fn, torch.Generator().manual_seed(3))
    d = distance.bon_distances(ref, ref, prompts, reward_fn, cdf, 4, pool, 2000, 16, torch.Generator().manual_seed(4))
    assert torch.equal(d["kl_k1"], torch.zeros(PROMPTS))
    exact = mv.kl_divergence(world.ref_log_probs().exp(), world.bon_probs(4))
    error, se = distance.mean_se(d["kl_to_bon"] - exact)
    assert abs(error) < 3 * se + 0.02


def test_best_and_worst_of_each_group_match_brute_force():
    rewards = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0, 5.0], [1.0, 1.0, 0.0, 4.0, 4.0, 2.0]])
    samples = mv.Samples([p for p in "ab" for _ in range(6)], torch.zeros(12, 1, dtype=torch.long),
                         torch.ones(12, 1, dtype=torch.bool))
    pool = distance.BoNPool(samples, rewards, torch.zeros(2, 6))
    best, worst = pool.best_and_worst(3)
    for flat, pick in ((best, max), (worst, min)):
        expected = []
        for p in range(2):
            for g in range(2):
                group = rewards[p, 3 * g:3 * g + 3].tolist()
                expected.append(6 * p + 3 * g + group.index(pick(group)))  # first on ties
        assert flat.tolist() == expected
    assert pool.best_and_worst(2, per_prompt=1)[0].tolist() == [0, 6]
    assert pool.prompts == ["a", "b"]
    with pytest.raises(ValueError, match="n"):
        pool.best_and_worst(7)


def test_method_objectives_are_the_named_combinations():
    d = {k: torch.tensor([float(i + 1), 2.0 * (i + 1)]) for i, k in
         enumerate(["kl_to_bon", "kl_from_bon", "kl_k1", "log_f_mid", "reward_g", "ipo"])}
    assert torch.equal(distance.method_objective("vbon", d, 4)[1], d["kl_to_bon"])
    assert torch.equal(distance.method_objective("bon-sft", d, 4)[1], d["kl_from_bon"])
    assert torch.allclose(distance.method_objective("vbon-l", d, 4)[1], d["kl_k1"] / 3 - d["log_f_mid"])
    assert torch.allclose(distance.method_objective("kl-rl", d, 4, beta=0.5)[1], 0.5 * d["kl_k1"] - d["reward_g"])
    assert torch.allclose(distance.method_objective("bonbon", d, 4, alpha=0.25)[1],
                          0.25 * d["kl_from_bon"] + 0.75 * d["ipo"])
    assert torch.allclose(distance.method_objective("jbond", d, 4)[1], (d["kl_from_bon"] + d["kl_to_bon"]) / 2)
    with pytest.raises(ValueError, match="method"):
        distance.method_objective("ppo", d, 4)
    with pytest.raises(ValueError, match="beta"):
        distance.method_objective("kl-rl", d, 4, beta=-1.0)


def test_mean_se_is_over_prompts():
    mean, se = distance.mean_se(torch.tensor([1.0, 3.0]))
    assert mean == 2.0 and se == pytest.approx(1.0)
    assert math.isnan(distance.mean_se(torch.tensor([1.0]))[1])
    assert torch.equal(distance.prompt_means(torch.tensor([1.0, 3.0, 5.0, 7.0]), 2), torch.tensor([2.0, 6.0],
                                                                                                   dtype=torch.float64))


def test_prompts_must_be_the_pool_s(world):
    world, ref, reward_fn, q = world
    cdf = mv.reference_cdf(ref, [0, 1], reward_fn, 20, torch.Generator().manual_seed(2))
    pool = distance.draw_pool(ref, [0, 1], 8, reward_fn, torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="pool's prompts"):
        distance.bon_distances(q, ref, [1, 0], reward_fn, cdf, 2, pool)
    with pytest.raises(ValueError, match="prompts"):
        distance.draw_pool(ref, [], 8, reward_fn)


def test_a_pool_of_the_local_lm_keeps_each_sample_s_log_prob_across_batches():
    """Batches are left-padded to different widths; the pool joins them, and log pi of every row is unchanged."""
    from minivbon import sentiment

    task = sentiment.load_task("local", n_train=3, n_test=1, max_new_tokens=6)
    prompts = task.train_prompts
    pool = distance.draw_pool(task.reference, prompts, 4, task.reward_fn, torch.Generator().manual_seed(0),
                              batch_size=5)  # three batches of different widths
    again = distance.masked_sum(task.reference.token_log_probs(pool.samples), pool.samples).view(3, 4)
    assert torch.allclose(again, pool.log_ref, atol=1e-4)
    assert pool.rewards.shape == (3, 4) and (pool.log_ref < 0).all()
