"""The book's exercise checkers (book/checkers.py) accept right answers and reject wrong ones."""
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
import checkers  # noqa: E402
from minivbon import bon_probs  # noqa: E402


def naive_bon_no_ties(p, r, n):  # right when rewards are distinct, wrong with ties
    f_lt = torch.stack([p[r < v].sum() for v in r])
    return (f_lt + p) ** n - f_lt**n


def naive_reward_cdf(p, r):
    return torch.stack([p[r < v].sum() for v in r]), torch.stack([p[r <= v].sum() for v in r])


def naive_log_bon_ratio(lf, lp, n):
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + (n - i) * lf + (i - 1) * lp
             for i in range(1, n + 1)]
    return torch.logsumexp(torch.stack(terms), 0)


RIGHT = {
    "reward_cdf": naive_reward_cdf,
    "bon_probs_no_ties": naive_bon_no_ties,
    "win_rate": lambda q, p, r: (q * sum(naive_reward_cdf(p, r)) / 2).sum(),
    "kl_rl_policy": lambda p, r, beta: p * torch.exp(r / beta) / (p * torch.exp(r / beta)).sum(),
    "log_bon_ratio": naive_log_bon_ratio,
    "vbon_loss": lambda q, p, r, n: (q * (q / bon_probs(p, r, n)).log()).sum(),
    "rloo_advantages": lambda r, k: torch.cat([g - (g.sum() - g) / (k - 1) for g in r.split(k)]),
}
WRONG = {
    "reward_cdf": lambda p, r: (naive_reward_cdf(p, r)[1], naive_reward_cdf(p, r)[1]),
    "bon_probs_no_ties": lambda p, r, n: p,
    "bon_probs": naive_bon_no_ties,  # forgets the ties
    "win_rate": lambda q, p, r: (q * naive_reward_cdf(p, r)[0]).sum(),  # ties count 0, not 1/2
    "kl_rl_policy": lambda p, r, beta: torch.softmax(r / beta, 0),  # forgets the reference
    "log_bon_ratio": lambda lf, lp, n: math.log(n) + (n - 1) * lf,  # only the first term
    "vbon_loss": lambda q, p, r, n: (bon_probs(p, r, n) * (bon_probs(p, r, n) / q).log()).sum(),
    "rloo_advantages": lambda r, k: torch.cat([g - g.mean() for g in r.split(k)]),  # includes itself in the mean
}


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_answers_pass(name, capsys):
    assert checkers.check(name, RIGHT[name], max_examples=60)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answers_fail_with_a_counterexample(name, capsys):
    assert not checkers.check(name, WRONG[name], max_examples=60)
    assert "Smallest failing case" in capsys.readouterr().out


def test_unanswered_and_unknown():
    def todo(*args):
        raise NotImplementedError

    assert not checkers.check("bon_probs", todo)
    with pytest.raises(ValueError, match="name must be one of"):
        checkers.check("no_such_exercise", todo)
