"""Every training method as one row of one table, read by ``TrainConfig``, the ``Trainer``, the book's panel
and the experiments.

A method is a step function with one signature,

    step(run, prompts, scored) -> (loss, stats)

``run`` is the :class:`~minivbon.loop.Trainer` (its ``policy``, ``reference``, ``config``, ``cdf``,
``generator`` and, for J-BOND, ``anchor``), ``prompts`` the step's prompt ids, ``scored`` the reward function
whose output is checked before it can reach a gradient; ``stats`` holds floats for the run's history. The
loop does the rest for every method alike: prompt draws, the backward pass, clipping, the optimiser, the
learning-rate schedule, checkpoints, evaluation and the all-or-nothing step::

    | method  | loss                                                  | samples / prompt | CDF | min k | reads         |
    |---------|-------------------------------------------------------|------------------|-----|-------|---------------|
    | vbon    | RLOO, task log(pi_bon/pi)(y)/(n-1), exact, ties aware  | k policy         | yes | 2     | beta, ties    |
    | vbon-l  | RLOO, task log F_mid(r(y)) (F_hat with ties="paper")   | k policy         | yes | 2     | beta, ties    |
    | kl-rl   | RLOO, task r(y), beta given                            | k policy         | no  | 2     | beta          |
    | bon-aware | E[max of n rewards of q]: PKPO rewards, beta given    | k >= n+1 policy  | no  | n+1   | beta          |
    | bon-sft | SFT on the best of n reference samples                 | n reference      | no  | 1     |               |
    | bonbon  | SFT + IPO contrast of the best and worst of n          | n reference      | no  | 1     | alpha         |
    | dpo     | DPO on the best and worst of n                          | n reference      | no  | 1     | beta          |
    | bond    | Jeffreys: SFT + (n-1) x the vbon-l RLOO loss           | k + n            | yes | 2     | beta, ties, eta |
    | jbond   | Jeffreys to Best-of-2 of an anchor (hard rounds or EMA) | k + 2 anchor     | no  | 2     | eta, anchor_* |

In every RL row beta is 1/(n-1) unless given (KL-RL must be given one); the other settings of
``TrainConfig`` (n, k, prompts_per_step, lr, ...) are read by every method. Adding a method is one step
function, one row in ``METHODS`` and one test (docs: "Adding a method").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import distill
from .dpo import dpo_loss
from .objectives import vbon_reward
from .pass_at_k import max_at_k_rewards
from .rloo import rl_loss


@dataclass(frozen=True)
class Method:
    """One row of the table: what a method computes, what it samples, what it needs and reads."""

    step: Callable  # step(run, prompts, scored) -> (loss, stats)
    cost: Callable  # cost(config) -> sequences sampled per prompt (policy, reference or anchor alike)
    summary: str  # one line, for menus and error messages
    needs_cdf: bool = False  # needs an EmpiricalCDF of reference rewards (cdf=...)
    min_k: int = 2  # RLOO needs two samples per prompt; methods that sample no policy output need one
    min_n: int = 2
    min_k_of_n: Callable | None = None  # min_k_of_n(n): a least k that grows with n (bon-aware: n + 1)
    reads: tuple[str, ...] = ()  # the method-specific settings it reads; any other is refused unless default
    requires: tuple[str, ...] = ()  # settings that must be given (not None)
    check: Callable | None = None  # check(config): further checks of a config, may fill derived settings
    anchored: bool = False  # keeps a frozen anchor (``run.anchor``), updated by ``after_update``
    after_update: Callable | None = None  # after_update(run), after each optimiser step (before run.step += 1)

    def least_k(self, n: int) -> int:
        """The fewest samples per prompt the method accepts at this n."""
        return self.min_k if self.min_k_of_n is None else max(self.min_k, self.min_k_of_n(n))


def sample_k(run, prompts: list):
    """k policy samples of each prompt, grouped by prompt: (prompts * k) rows."""
    return run.policy.sample([p for p in prompts for _ in range(run.config.k)], run.generator)


def rl_step(run, samples, raw, task, kl_coef: float | None = None, reference=None, task_is_advantage=False) -> tuple:
    """rl_loss on ``samples`` with task reward ``task`` (tensor or function of log pi); stats with the raw reward."""
    cfg = run.config
    loss, stats = rl_loss(run.policy, run.reference if reference is None else reference, samples, task,
                          cfg.kl_coef if kl_coef is None else kl_coef, cfg.k, task_is_advantage)
    return loss, {"reward": raw.double().mean().item(), **stats}


def vbon_task(cdf, n: int, ties: str, prompt_ids: list, raw):
    """vBoN's task reward, a function of log pi(y) (B,): log(pi_bon/pi)(y)/(n-1) from the rewards raw (B,).

    ties="aware": y's tie class has mass max(#ties/(M+1), pi(y)); "paper": F_hat = (#below + 1)/(M + 1) alone."""
    raw = raw.cpu()
    log_mass = cdf.log_tie_mass(prompt_ids, raw) if ties == "aware" else None
    return lambda log_ref: vbon_reward(cdf.log_cdf(prompt_ids, raw), n, log_ref=log_ref.cpu(), log_tie_mass=log_mass)


def vbon_l_task(cdf, n: int, ties: str, prompt_ids: list, raw):
    """vBoN-L's task reward log F(r(y)) (B,): the mid-rank F_mid (ties="aware") or F_hat = (#below + 1)/(M + 1)."""
    return vbon_reward(cdf.log_cdf(prompt_ids, raw.cpu(), ties="mid" if ties == "aware" else "below"), n)


def vbon_step(run, prompts, scored):
    samples = sample_k(run, prompts)
    raw = scored(samples)
    return rl_step(run, samples, raw, vbon_task(run.cdf, run.config.n, run.config.ties, samples.prompt_ids, raw))


def vbon_l_step(run, prompts, scored):
    cfg = run.config
    samples = sample_k(run, prompts)
    raw = scored(samples)
    return rl_step(run, samples, raw, vbon_l_task(run.cdf, cfg.n, cfg.ties, samples.prompt_ids, raw))


def kl_rl_step(run, prompts, scored):
    samples = sample_k(run, prompts)
    raw = scored(samples)
    return rl_step(run, samples, raw, raw.cpu())


def bon_aware_step(run, prompts, scored):
    """BoN-aware fine-tuning: the gradient of E[max of n rewards of the policy] from k >= n + 1 samples (PKPO's
    per-sample rewards with a leave-one-out baseline, times k: the loss averages over the k samples)."""
    cfg = run.config
    samples = sample_k(run, prompts)
    raw = scored(samples)
    task = cfg.k * max_at_k_rewards(raw.view(-1, cfg.k).cpu(), cfg.n).view(-1)
    return rl_step(run, samples, raw, task, task_is_advantage=True)


def best_and_worst(run, prompts, scored):
    """The best and worst of n reference samples per prompt, and the targets' mean reward."""
    best, worst, raw = distill.best_and_worst_of_n(run.reference, prompts, run.config.n, scored, run.generator)
    return best, worst, raw.max(1).values.double().mean().item()


def bon_sft_step(run, prompts, scored):
    best, _, reward = best_and_worst(run, prompts, scored)
    return distill.sft_loss(run.policy, best), {"reward": reward}


def bonbon_step(run, prompts, scored):
    cfg = run.config
    best, worst, reward = best_and_worst(run, prompts, scored)
    loss, stats = distill.bonbon_loss(run.policy, run.reference, best, worst, cfg.n, cfg.alpha)
    return loss, {**stats, "reward": reward}


def dpo_step(run, prompts, scored):
    best, worst, reward = best_and_worst(run, prompts, scored)
    loss, stats = dpo_loss(run.policy, run.reference, best, worst, run.config.kl_coef)
    return loss, {**stats, "reward": reward}


def bond_step(run, prompts, scored):
    """(1 - eta) SFT on BoN targets + eta (n-1) x vBoN-L's RLOO loss: KL(q || pi_bon) = (n-1) x its objective."""
    cfg = run.config
    samples = sample_k(run, prompts)
    raw = scored(samples)
    best, _, _ = distill.best_and_worst_of_n(run.reference, prompts, cfg.n, scored, run.generator)
    backward, stats = rl_step(run, samples, raw, vbon_l_task(run.cdf, cfg.n, cfg.ties, samples.prompt_ids, raw))
    return (1 - cfg.eta) * distill.sft_loss(run.policy, best) + cfg.eta * ((cfg.n - 1) * backward), stats


def jbond_step(run, prompts, scored):
    """Jeffreys to Best-of-2 of the anchor; two anchor samples per prompt serve both directions."""
    cfg = run.config
    samples = sample_k(run, prompts)
    raw = scored(samples)
    best, _, anchor_raw = distill.best_and_worst_of_n(run.anchor, prompts, 2, scored, run.generator)
    r_j = distill.jbond_reward(raw.view(-1, cfg.k).cpu(), anchor_raw.cpu()).view(-1)
    backward, s = rl_step(run, samples, raw, r_j, kl_coef=1.0, reference=run.anchor)
    stats = {"reward": s["reward"], "task_reward": s["task_reward"], "kl_to_anchor_k1": s["kl_k1"]}
    return (1 - cfg.eta) * distill.sft_loss(run.policy, best) + cfg.eta * backward, stats


def jbond_after_update(run) -> None:
    """Hard rounds: the anchor jumps to the policy every anchor_every steps (never after the last); EMA: it moves."""
    cfg = run.config
    if (run.step + 1) % cfg.anchor_every == 0 and run.step + 1 < cfg.steps:
        distill.ema_update(run.anchor, run.policy, cfg.anchor_ema)


METHODS: dict[str, Method] = {
    "vbon": Method(vbon_step, lambda cfg: cfg.k, "vBoN: RLOO on the exact log(pi_bon/pi)/(n-1)", needs_cdf=True,
                   reads=("beta", "ties")),
    "vbon-l": Method(vbon_l_step, lambda cfg: cfg.k, "vBoN-L: RLOO on log F(r), the lower bound", needs_cdf=True,
                     reads=("beta", "ties")),
    "kl-rl": Method(kl_rl_step, lambda cfg: cfg.k, "KL-RL: RLOO on the raw reward, beta given", min_n=1, reads=("beta",),
                    requires=("beta",)),
    "bon-aware": Method(bon_aware_step, lambda cfg: cfg.k, "BoN-aware: RL on what Best-of-n of the policy earns",
                        reads=("beta",), requires=("beta",), min_k_of_n=lambda n: n + 1),
    "bon-sft": Method(bon_sft_step, lambda cfg: cfg.n, "BoN-SFT: maximum likelihood on Best-of-n samples", min_k=1),
    "bonbon": Method(bonbon_step, lambda cfg: cfg.n, "BoNBoN: SFT + IPO on the best and worst of n", min_k=1, reads=("alpha",)),
    "dpo": Method(dpo_step, lambda cfg: cfg.n, "DPO on the best and worst of n", min_k=1, reads=("beta",)),
    "bond": Method(bond_step, lambda cfg: cfg.k + cfg.n, "BOND: Jeffreys divergence to pi_bon", needs_cdf=True,
                   reads=("beta", "ties", "eta")),
    "jbond": Method(jbond_step, lambda cfg: cfg.k + 2, "J-BOND: Jeffreys to Best-of-2 of a moving anchor",
                    reads=("eta", "anchor_ema", "anchor_every"), check=lambda cfg: cfg.check_jbond_rounds(),
                    anchored=True, after_update=jbond_after_update),
}


def method(name: str) -> Method:
    """The row of ``name``; an unknown name is a ValueError listing the table."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]


def readers(setting: str) -> tuple[str, ...]:
    """The methods that read a method-specific setting (beta, ties, alpha, eta, anchor_ema, anchor_every)."""
    return tuple(name for name, row in METHODS.items() if setting in row.reads)
