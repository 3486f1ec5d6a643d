"""The "bon-aware" method: rl_loss with a task reward that is already an advantage (only the KL term gets the
leave-one-out baseline), by hand on a tiny batch, and the method trained by the one loop reaching the exact
BoN-aware optimum of the string world (not Best-of-n's law)."""
import pytest
import torch

from minivbon.bon import kl_divergence
from minivbon.inference_aware import bon_aware_optimum
from minivbon.loop import TrainConfig, train
from minivbon.rloo import rl_loss
from minivbon.toy import TabularPolicy, make_world


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (tests/conftest.py)


def tiny_batch(k):
    """A perturbed prefix policy on a 2-prompt world, k samples of each prompt, and the exact log q, log pi of them."""
    world = make_world(num_prompts=2, vocab=3, length=2, seed=1)
    ref = world.reference("prefix")
    g = torch.Generator().manual_seed(0)
    policy = TabularPolicy(ref.logits + torch.randn(ref.logits.shape, generator=g, dtype=torch.float64), 3, 2)
    samples = policy.sample([0] * k + [1] * k, g)
    index = (samples.tokens[:, None, :] == world.strings[None]).all(-1).long().argmax(-1)  # (B,) string index
    prompts = torch.tensor(samples.prompt_ids)
    log_pi = world.ref_log_probs()[prompts, index]  # exact, by enumeration of the strings
    return policy, ref, samples, prompts, index, log_pi


def hand_surrogate(policy, prompts, index, log_pi, task, beta, k, task_is_advantage):
    """-(1/B) sum_j adv_j log q(y_j), adv built sample by sample with explicit leave-one-out means."""
    log_q = policy.log_probs_all(make_world(num_prompts=2, vocab=3, length=2, seed=1).strings)[prompts, index]
    k1 = (log_q.detach() - log_pi).tolist()
    reward = [t - beta * x for t, x in zip(task.tolist(), k1)]
    adv = []
    for j in range(len(k1)):
        others = [i for i in range(len(k1)) if i // k == j // k and i != j]
        if task_is_advantage:  # the task reward as given; the baseline only on the KL term
            adv.append(task[j].item() - beta * (k1[j] - sum(k1[i] for i in others) / (k - 1)))
        else:  # the baseline on the whole reward
            adv.append(reward[j] - sum(reward[i] for i in others) / (k - 1))
    return -(torch.tensor(adv, dtype=torch.float64) * log_q).mean()


@pytest.mark.parametrize("task_is_advantage", [True, False])
def test_rl_loss_baselines_only_the_kl_term_when_the_task_is_an_advantage(task_is_advantage):
    k, beta = 4, 0.7
    policy, ref, samples, prompts, index, log_pi = tiny_batch(k)
    task = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, 4.0, -1.0, 2.5], dtype=torch.float64)
    loss, stats = rl_loss(policy, ref, samples, task, beta, k, task_is_advantage=task_is_advantage)
    (grad,) = torch.autograd.grad(loss, policy.logits)
    want = hand_surrogate(policy, prompts, index, log_pi, task, beta, k, task_is_advantage)
    (want_grad,) = torch.autograd.grad(want, policy.logits)
    assert loss.item() == pytest.approx(want.item(), abs=1e-12)
    assert torch.allclose(grad, want_grad, atol=1e-12) and grad.abs().max() > 1e-3
    assert stats["task_reward"] == pytest.approx(task.mean().item())
    # the two ways differ by the task's own leave-one-out mean: the flag is not a no-op
    other = hand_surrogate(policy, prompts, index, log_pi, task, beta, k, not task_is_advantage)
    assert abs(other.item() - loss.item()) > 1e-3


def test_bon_aware_training_reaches_its_own_optimum_not_best_of_n():
    world = make_world(num_prompts=2, vocab=3, length=3, seed=3)
    ref = world.reference("prefix")
    p, r = world.ref_log_probs().exp(), world.rewards_all()
    q_star = bon_aware_optimum(p, r, 4, 1.0)
    pi_bon = world.bon_probs(4)

    def reward_fn(samples):
        return world.reward(samples.prompt_ids, samples.tokens)

    def evaluate(policy):
        q = policy.log_probs_all(world.strings).double().exp()
        return {"d": kl_divergence(q, q_star).mean().item(), "d_bon": kl_divergence(q, pi_bon).mean().item()}

    cfg = TrainConfig(method="bon-aware", n=4, k=8, beta=1.0, prompts_per_step=16, steps=400, lr=0.1,
                      max_grad_norm=None, eval_every=50, lr_schedule="cosine")
    trainer = train(TabularPolicy(ref.logits.clone(), 3, 3), ref, [0, 1], reward_fn, cfg, evaluate=evaluate,
                    progress=False)
    evals = [h for h in trainer.history if "d" in h]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 400
    first, last = evals[0], evals[-1]
    assert first["d"] == pytest.approx(kl_divergence(p, q_star).mean().item(), rel=1e-9)  # it starts at pi
    assert last["d"] <= 0.2 * first["d"]
    assert last["d"] < last["d_bon"]  # nearer its own optimum q* than Best-of-n's law
    assert kl_divergence(q_star, pi_bon).mean().item() > 10 * last["d"]  # and the two targets are far apart
