"""minivbon.distill: BoNBoN, BOND and J-BOND against brute force, and their fixed points by enumeration."""
import itertools
import math

import pytest
import torch

import minivbon as mv
from minivbon import distill
from minivbon.loop import TrainConfig, Trainer, train
from minivbon.toy import TabularPolicy, make_world


def brute_force_best_worst(p, r, n):
    """Sum over every n-tuple of outcomes: (S, S) law of (argmax, argmin), first index on ties."""
    s = len(p)
    out = torch.zeros(s, s, dtype=torch.float64)
    for tup in itertools.product(range(s), repeat=n):
        rs = [r[i].item() for i in tup]
        best, worst = tup[rs.index(max(rs))], tup[rs.index(min(rs))]
        out[best, worst] += math.prod(p[i].item() for i in tup)
    return out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_best_worst_probs_matches_brute_force(n):
    g = torch.Generator().manual_seed(n)
    p = torch.rand(2, 5, generator=g, dtype=torch.float64)
    p /= p.sum(-1, keepdim=True)
    r = torch.randn(2, 5, generator=g, dtype=torch.float64)
    joint = distill.best_worst_probs(p, r, n)
    for i in range(2):
        assert torch.allclose(joint[i], brute_force_best_worst(p[i], r[i], n), atol=1e-12)
    assert torch.allclose(joint.sum(2), mv.bon_probs(p, r, n), atol=1e-12)  # the best is BoN's draw
    with pytest.raises(ValueError, match="ties"):
        distill.best_worst_probs(p, torch.zeros_like(r), n)


def test_bonbon_beta_is_bons_own_average_margin():
    assert distill.bonbon_beta(2) == pytest.approx(0.5)
    assert distill.bonbon_beta(4) == pytest.approx(1 / (2 * 3 * (1 + 1 / 2 + 1 / 3)))
    # continuous limit: 3000 equally likely outcomes, E[h] under BoN's (best, worst) is (n-1) H_{n-1}
    n, s = 4, 3000
    p = torch.full((1, s), 1 / s, dtype=torch.float64)
    r = torch.randperm(s, generator=torch.Generator().manual_seed(0)).double()[None]
    joint = distill.best_worst_probs(p, r, n)
    u = (mv.bon_probs(p, r, n) / p).log()  # log pi_bon / pi
    margin = (joint * (u[:, :, None] - u[:, None, :])).sum().item()
    assert margin == pytest.approx(1 / (2 * distill.bonbon_beta(n)), rel=0.01)
    with pytest.raises(ValueError, match="n"):
        distill.bonbon_beta(1)


@pytest.fixture(scope="module")
def small():
    world = make_world(num_prompts=1, vocab=2, length=3, seed=3)  # 8 strings
    ref = world.reference()
    p, r = world.ref_log_probs().exp(), world.rewards_all()
    return world, ref, p, r, (lambda s: world.reward(s.prompt_ids, s.tokens))


def test_bonbon_loss_averages_to_its_exact_objective(small):
    world, ref, p, r, reward_fn = small
    policy = TabularPolicy.from_first_order(world.ref_logits)
    with torch.no_grad():
        policy.logits.add_(0.3 * torch.randn(policy.logits.shape, generator=torch.Generator().manual_seed(1),
                                             dtype=torch.float64))
    g, n, alpha = torch.Generator().manual_seed(2), 4, 0.3
    best, worst, _ = distill.best_and_worst_of_n(ref, [0] * 20000, n, reward_fn, g)
    loss, _ = distill.bonbon_loss(policy, ref, best, worst, n, alpha)
    exact = distill.bonbon_objective(policy.log_probs_all(world.strings), p.log(), distill.best_worst_probs(p, r, n),
                                     n, alpha)
    assert loss.item() == pytest.approx(exact.item(), rel=0.02)


def test_jbond_reward_averages_to_its_expected_value(small):
    world, ref, p, r, reward_fn = small
    g = torch.Generator().manual_seed(4)
    anchors = ref.sample([0] * 40000, g)
    anchor_r = reward_fn(anchors).view(-1, 2)  # (20000, 2)
    strings_r = r[0]  # (8,)
    mc = distill.jbond_reward(strings_r.expand(len(anchor_r), -1), anchor_r).mean(0)  # (8,)
    assert torch.allclose(mc, distill.jbond_expected_reward(p, r)[0], atol=0.05)
    assert set(distill.jbond_reward(strings_r[None], anchor_r[:1]).unique().tolist()) <= {0.0, -math.log(16)}


def test_iterated_best_of_2_is_best_of_4_and_8_even_with_ties():
    g = torch.Generator().manual_seed(5)
    p = torch.rand(3, 12, generator=g, dtype=torch.float64)
    p /= p.sum(-1, keepdim=True)
    r = torch.randint(0, 4, (3, 12), generator=g).double()  # many ties
    two = mv.bon_probs(p, r, 2)
    assert torch.allclose(mv.bon_probs(two, r, 2), mv.bon_probs(p, r, 4), atol=1e-12)
    assert torch.allclose(mv.bon_probs(mv.bon_probs(two, r, 2), r, 2), mv.bon_probs(p, r, 8), atol=1e-12)


def test_ema_update_moves_the_anchor_part_way():
    policy = TabularPolicy(torch.ones(1, 7, 2, dtype=torch.float64), 2, 3)
    anchor = distill.make_anchor(policy)
    assert not any(q.requires_grad for q in anchor.parameters())
    with torch.no_grad():
        policy.logits.fill_(5.0)
    distill.ema_update(anchor, policy, 0.25)
    assert torch.allclose(anchor.logits, torch.full_like(anchor.logits, 2.0))
    distill.ema_update(anchor, policy, 1.0)
    assert torch.equal(anchor.logits, policy.logits)


def trained(world, ref, reward_fn, cdf, **kw):
    cfg = TrainConfig(**{**dict(n=4, k=8, prompts_per_step=4, steps=500, lr=0.1, lr_schedule="cosine",
                                max_grad_norm=None), **kw})
    policy = TabularPolicy.from_first_order(world.ref_logits, "prefix")
    train(policy, ref, [0], reward_fn, cfg, cdf=cdf, progress=False)
    return policy.log_probs_all(world.strings).detach().exp()


@pytest.mark.parametrize("method", ["bon-sft", "bond", "jbond"])
def test_methods_that_target_bon_reach_it_on_the_whole_prefix_family(small, method):
    """Fixed points by enumeration: BoN-SFT (forward KL), BOND (Jeffreys) and J-BOND (two rounds of
    Best-of-2) all end near pi_bon(4) when the family can represent it."""
    world, ref, p, r, reward_fn = small
    cdf = mv.reference_cdf(ref, [0], reward_fn, 2000, torch.Generator().manual_seed(6))
    bon = mv.bon_probs(p, r, 4)
    q = trained(world, ref, reward_fn, cdf, method=method)
    start = mv.kl_divergence(bon, p).item() + mv.kl_divergence(p, bon).item()
    jeffreys = mv.kl_divergence(bon, q).item() + mv.kl_divergence(q, bon).item()
    assert jeffreys < 0.1 * start, (method, jeffreys, start)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0])
def test_bonbon_optimum_is_a_minimum_and_bon_itself_at_alpha_1(alpha):
    g = torch.Generator().manual_seed(1)
    p = torch.rand(2, 6, generator=g, dtype=torch.float64) ** 4  # probabilities over several decades
    p /= p.sum(-1, keepdim=True)
    r = torch.randn(2, 6, generator=g, dtype=torch.float64)
    n = 4
    pairs = distill.best_worst_probs(p, r, n)
    q = distill.bonbon_optimum(p, pairs, n, alpha)
    z = q.log().requires_grad_(True)
    value = distill.bonbon_objective(z.log_softmax(-1), p.log(), pairs, n, alpha)
    grad, = torch.autograd.grad(value.sum(), z)
    assert grad.abs().max() < 1e-8  # stationary, and the loss is convex in the logits: the minimum
    for _ in range(20):  # no nearby distribution does better
        nearby = (z.detach() + 0.01 * torch.randn(z.shape, generator=g, dtype=torch.float64)).log_softmax(-1)
        assert (distill.bonbon_objective(nearby, p.log(), pairs, n, alpha) >= value.detach() - 1e-12).all()
    if alpha == 1.0:  # pure SFT on BoN's draws: q* = pi_bon, outcome by outcome, even where it is tiny
        assert torch.allclose(q.log(), mv.bon_probs(p, r, n).log(), atol=1e-6)
    with pytest.raises(ValueError, match="pairs"):
        distill.bonbon_optimum(p, pairs[:, :3], n, alpha)


def test_bonbon_reaches_its_own_exact_fixed_point_which_is_not_bon(small):
    world, ref, p, r, reward_fn = small
    n, alpha = 4, 0.5
    pairs = distill.best_worst_probs(p, r, n)
    z = p.log().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(2000):  # the exact minimiser over all distributions on 8 strings
        opt.zero_grad()
        distill.bonbon_objective(z.log_softmax(-1), p.log(), pairs, n, alpha).sum().backward()
        opt.step()
    q_star = z.detach().softmax(-1)
    q = trained(world, ref, reward_fn, None, method="bonbon", alpha=alpha)
    bon = mv.bon_probs(p, r, n)
    assert mv.kl_divergence(q, q_star).item() < 0.02
    assert mv.kl_divergence(q_star, bon).item() > 1e-3  # the IPO contrast moves its optimum away from BoN


def test_jbond_resumes_from_a_checkpoint_with_its_anchor(small, tmp_path):
    world, ref, p, r, reward_fn = small
    cfg = TrainConfig(method="jbond", n=4, k=4, prompts_per_step=2, steps=12, lr=0.1)
    assert cfg.anchor_every == 6
    straight = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0], reward_fn, cfg)
    straight.run(progress=False)
    first = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0], reward_fn, cfg)
    first.run(steps=7, progress=False)
    first.save(tmp_path / "j.pt")
    resumed = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0], reward_fn, cfg).load(tmp_path / "j.pt")
    resumed.run(progress=False)
    assert torch.equal(resumed.policy.logits, straight.policy.logits)
    assert torch.equal(resumed.anchor.logits, straight.anchor.logits)


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="jbond", n=6), "power of 2"),
    (dict(method="bonbon", alpha=1.5), "alpha"),
    (dict(method="bond", eta=-0.1), "eta"),
    (dict(method="jbond", anchor_ema=0.0), "anchor_ema"),
    (dict(method="jbond", anchor_every=0), "anchor_every"),
    (dict(method="vbon", lr_schedule="linear"), "lr_schedule"),
])
def test_bad_distillation_settings_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_step_budget_is_matched_across_methods():
    for method, expected in [("vbon", (8, 32)), ("bon-sft", (8, 32)), ("bonbon", (8, 32)), ("bond", (4, 32)),
                             ("jbond", (5, 30)), ("kl-rl", (8, 32))]:
        cfg = TrainConfig(method=method, n=4, k=4, prompts_per_step=8, beta=1.0 if method == "kl-rl" else None)
        assert cfg.step_budget == expected, method
    assert TrainConfig(method="jbond", n=8, steps=30).anchor_every == 10
    assert TrainConfig(method="jbond", anchor_ema=0.1).anchor_every == 1  # n is not read with an EMA anchor


@pytest.mark.parametrize("n,steps", [(4, 30), (8, 30), (16, 30), (32, 30), (8, 1000)])
def test_hard_rounds_move_the_anchor_log2_n_minus_1_times(small, monkeypatch, n, steps):
    world, ref, p, r, reward_fn = small
    moves = []
    monkeypatch.setattr(distill, "ema_update", lambda anchor, policy, gamma: moves.append(gamma))
    trainer = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0], reward_fn,
                      TrainConfig(method="jbond", n=n, k=2, prompts_per_step=1, steps=steps, lr=0.1))
    trainer.run(progress=False)
    assert len(moves) == round(math.log2(n)) - 1, (n, steps, trainer.config.anchor_every)


def test_cosine_schedule_restarts_each_hard_jbond_round_only(small):
    world, ref, p, r, reward_fn = small

    def lrs(**kwargs):
        cfg = TrainConfig(**{**dict(n=4, k=2, prompts_per_step=1, steps=10, lr=1.0, lr_schedule="cosine"), **kwargs})
        return [cfg.lr_at(t) for t in range(cfg.steps)]

    whole = [0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(10)]
    half = [0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(5)]
    assert lrs(method="bon-sft") == pytest.approx(whole)
    assert lrs(method="jbond", anchor_ema=0.5) == pytest.approx(whole)  # a moving anchor: one schedule
    assert lrs(method="jbond") == pytest.approx(half + half)  # two rounds of 5 steps, each from lr down
    odd = lrs(method="jbond", n=8, steps=10)  # rounds of ceil(10/3) = 4 steps: 4 + 4 + a last round of 2
    assert odd[:4] == odd[4:8] == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)])
    assert odd[8:] == pytest.approx([1.0, 0.5])
    assert lrs(method="jbond", lr_schedule="constant") == [1.0] * 10
    seen = []  # the trainer uses exactly these rates, step by step
    cfg = TrainConfig(method="jbond", n=4, k=2, prompts_per_step=1, steps=6, lr=0.1, lr_schedule="cosine")
    trainer = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0], reward_fn, cfg)
    trainer.run(progress=False, callback=lambda t: seen.append(t.optimizer.param_groups[0]["lr"]))
    assert seen == [cfg.lr_at(t) for t in range(6)]
