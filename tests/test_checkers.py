"""The book's exercise checkers (book/checkers.py) accept the worked solutions (book/solutions/) and reject
wrong answers, naive formulas that underflow at large N included, with a message that locates the error."""
import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

BOOK = Path(__file__).resolve().parents[1] / "book"
sys.path.insert(0, str(BOOK))
import checkers  # noqa: E402
from minivbon import bon_probs, kl_divergence, reward_cdf  # noqa: E402
from minivbon.pass_at_k import max_at_k_rewards  # noqa: E402

SOLUTIONS = {}
for chapter in sorted((BOOK / "solutions").glob("chapter*.py")):
    SOLUTIONS.update(importlib.import_module(f"solutions.{chapter.stem}").SOLUTIONS)


def naive_bon_no_ties(p, r, n):  # right when rewards are distinct, wrong with ties
    f_lt = torch.stack([p[r < v].sum() for v in r])
    return (f_lt + p) ** n - f_lt**n


def naive_log_bon_ratio(lf, lp, n):  # the formula as written: fine for small n, cancels for large n
    a, g = lf.exp(), lp.exp()
    return torch.log(((a + g) ** n - a**n) / g)


def lowest_index_bon_sample(probs, rewards, n, num_samples, generator=None):
    """Breaks ties by the answer's index, not by a position: biased within a tie class (chapter 1, section 2)."""
    draws = torch.multinomial(probs.expand(num_samples, -1), n, replacement=True, generator=generator)
    key = rewards[draws] * 1000 - draws  # among tied rewards the smallest answer index wins
    return draws.gather(-1, key.argmax(-1, keepdim=True)).squeeze(-1)


def naive_best_worst(p, r, n):
    """n (n-1) pi(a) pi(b) (F_<(a) - F_<=(b))^(n-2): right only when no string can repeat (and no diagonal)."""
    f_le = (p[None, :] * (r[None, :] <= r[:, None])).sum(-1)
    between = ((f_le - p)[:, None] - f_le[None, :]).clamp_min(0)
    return n * (n - 1) * p[:, None] * p[None, :] * between ** (n - 2) * (r[:, None] > r[None, :])


WRONG = {
    "expected_reward": lambda p, r: r.mean(),  # forgets the probabilities
    "reward_cdf": lambda p, r: (reward_cdf(p, r)[1], reward_cdf(p, r)[1]),
    "bon_probs_no_ties": lambda p, r, n: p,
    "bon_probs": naive_bon_no_ties,  # forgets the ties
    "bon_sample": lowest_index_bon_sample,
    "win_rate": lambda q, p, r: (q * reward_cdf(p, r)[0]).sum(),  # ties count 0, not 1/2
    "kl_rl_policy": lambda p, r, beta: p * torch.exp(r / beta) / (p * torch.exp(r / beta)).sum(),  # overflows
    "win_rate_from_samples": lambda r, m: (m[:, None, :] < r[:, :, None]).double().mean((-1, -2)),  # ties lost
    "log_bon_ratio": naive_log_bon_ratio,
    "vbon_loss": lambda q, p, r, n: (bon_probs(p, r, n) * (bon_probs(p, r, n) / q).log()).sum(),
    "mid_rank_bound": lambda lf, lg, n: math.log(n) + (n - 1) * torch.log(lf.exp() + lg.exp() / 2),  # underflows
    "rloo_advantages": lambda r, k: torch.cat([g - g.mean() for g in r.split(k)]),  # includes itself in the mean
    "log_f_hat": lambda r, m: torch.log(((m[:, None, :] < r[:, :, None]).double().sum(-1) + 1) / (m.shape[1] + 1)),
    "rloo_loss": lambda lp, t, k1, b, k: -(SOLUTIONS["rloo_advantages"](t - b * k1, k) * lp).sum(),  # sum, not mean
    "mean_se": lambda x, g: (x.mean(), x.std() / math.sqrt(len(x))),  # treats correlated samples as independent
    "pareto_front": lambda kl, v: v == v.max(),
    "bon_win_rate_from_pool": lambda pool, m, n: SOLUTIONS["win_rate_from_samples"](pool, m),  # forgets the max
    "bonbon_beta": lambda n: 1.0 / (2 * n * sum(1.0 / j for j in range(1, n + 1))),  # H_n instead of H_(n-1)
    "best_worst_probs": naive_best_worst,  # forgets that a string can be drawn twice
    "jeffreys": lambda p, q, eta: eta * kl_divergence(p, q) + (1 - eta) * kl_divergence(q, p),  # weights swapped
    "kl_penalised_rewards": lambda r, lp, ref, m, b: r - b * ((lp - ref) * m).mean(-1),  # mean, not sum, over tokens
    "log_f_mid_by_id": lambda r, ids, refs: torch.log(  # uses the first prompt's references for every sample
        ((refs[ids[0]] < r[:, None]).double().sum(-1) + (refs[ids[0]] == r[:, None]).double().sum(-1) / 2 + 1)
        / (len(refs[ids[0]]) + 1)),
    "rloo_advantages_nan": lambda r, k: SOLUTIONS["rloo_advantages"](r.nan_to_num(0.0), k),  # unscorable as 0
    "soft_bon_law": lambda p, r, n, t: torch.softmax(p.log() + r / t, 0),  # the n -> infinity limit, not n
    "bon_expected_reward": lambda q, r, n: (naive_bon_no_ties(q, r, n) * r).sum(),  # forgets the ties
    "max_at_k_rewards": lambda r, k: max_at_k_rewards(r[None], k, baseline=False)[0],  # no baseline
    "bradley_terry_loss": lambda a, b, y: -(y * torch.sigmoid(a - b).log()  # log(sigmoid) is -inf at d = -800
                                            + (1 - y) * torch.sigmoid(b - a).log()).mean(),
    "bon_kl": lambda p, r, n: kl_divergence(naive_bon_no_ties(p, r, n), p),  # forgets the ties
    "gao_fit": lambda kl, g: SOLUTIONS["gao_fit"](kl.clamp_min(0) ** 2, g),  # fits in KL, not in sqrt(KL)
}


def test_every_exercise_has_a_solution_and_a_wrong_answer():
    assert set(SOLUTIONS) == set(checkers.EXERCISES) == set(WRONG)


@pytest.mark.parametrize("name", sorted(checkers.EXERCISES))
def test_solutions_pass(name, capsys):
    assert checkers.check(name, SOLUTIONS[name], max_examples=60)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(checkers.EXERCISES))
def test_wrong_answers_fail_and_say_where(name, capsys):
    assert not checkers.check(name, WRONG[name], max_examples=60)
    out = capsys.readouterr().out
    assert "not yet" in out and ("largest difference" in out or "differ" in out or "raised" in out), out


@pytest.mark.parametrize("name", ["log_bon_ratio", "mid_rank_bound", "kl_rl_policy", "best_worst_probs"])
def test_naive_formulas_fail_on_a_hard_case(name, capsys):
    assert not checkers.check(name, WRONG[name], max_examples=60)
    assert "fixed case" in capsys.readouterr().out


def test_a_shape_error_is_reported_with_the_shapes(capsys):
    assert not checkers.check("reward_cdf", lambda p, r: (p[:1], p[:1]))
    out = capsys.readouterr().out
    assert "shape" in out and "expected" in out


def test_a_crash_is_reported_not_raised(capsys):
    assert not checkers.check("expected_reward", lambda p, r: p @ r[:0])
    assert "raised" in capsys.readouterr().out


def test_unanswered_and_unknown(capsys):
    def todo(*args):
        raise NotImplementedError

    assert not checkers.check("bon_probs", todo)
    assert "not answered yet" in capsys.readouterr().out
    with pytest.raises(ValueError, match="name must be one of"):
        checkers.check("no_such_exercise", todo)
