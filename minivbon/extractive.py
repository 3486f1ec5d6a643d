"""A small extractive summariser and a Bradley-Terry reward model over extracts (chapter 8's models).

Both read fixed sentence features (P papers, S_MAX sentence slots, D features; see
:func:`minivbon.summarize.sentence_features`) and share their weights across papers, so what they learn on
training papers carries over to held-out ones. Everything is float64 so that exact tables sum to 1 to
rounding.

``ExtractivePolicy`` implements the policy interface of :mod:`minivbon.policy`. Tokens are sentence indices
0..S_MAX-1 and STOP = S_MAX. At step t (t sentences chosen, the last one at index ``last``) each candidate c,
a later sentence of the paper or STOP (allowed once t >= 1), gets the logit

    l(c) = w . tanh(A [e_c, m, e_c * m, (c - last)/S_MAX, [c = STOP]] + s_t) / temperature,

e_j = tanh(E f_j) the encoded features of sentence j (e_STOP a learned vector), m the mean of e over the
chosen sentences (0 before any), s_t a learned vector per step. After L sentences the output ends.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn.functional import logsigmoid

from .checks import check_int, check_positive
from .distance import mean_se
from .policy import Samples


def output_indicator(tokens: Tensor, mask: Tensor, s_max: int) -> Tensor:
    """Which sentences each output chose: (B, s_max) bool from tokens and mask (B, T)."""
    pick = mask.to(torch.bool) & (tokens < s_max)
    out = torch.zeros(len(tokens), s_max + 1, dtype=torch.bool)
    return out.scatter_(1, torch.where(pick, tokens, s_max), True)[:, :s_max]


class ExtractivePolicy(nn.Module):
    """Autoregressive choice of 1..max_len sentences of a paper; prompt ids are paper indices into ``features``."""

    def __init__(self, features: Tensor, num_sentences: Tensor, max_len: int = 3, hidden: int = 32,
                 temperature: float = 1.0, seed: int = 0):
        super().__init__()
        if features.dim() != 3 or num_sentences.shape != features.shape[:1]:
            raise ValueError(f"features must be (P, S_MAX, D) and num_sentences (P,), got {tuple(features.shape)} "
                             f"and {tuple(num_sentences.shape)}")
        if (num_sentences < 1).any() or (num_sentences > features.shape[1]).any():
            raise ValueError(f"num_sentences must be in 1..{features.shape[1]}")
        self.register_buffer("features", features.double(), persistent=False)
        self.register_buffer("num_sentences", num_sentences.long(), persistent=False)
        self.s_max, self.stop, self.max_len = features.shape[1], features.shape[1], check_int(max_len, "max_len")
        self.temperature = check_positive(temperature, "temperature")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.encode = nn.Linear(features.shape[2], hidden)
            self.stop_vec = nn.Parameter(0.1 * torch.randn(hidden))
            self.step_vec = nn.Parameter(torch.zeros(max_len, hidden))
            self.mix = nn.Linear(3 * hidden + 2, hidden)
            self.out = nn.Linear(hidden, 1)
        self.double()

    def clone(self, trainable: bool = False) -> "ExtractivePolicy":
        """An independent copy of the weights (frozen by default), sharing the feature tensors."""
        memo = {id(self.features): self.features, id(self.num_sentences): self.num_sentences}
        return copy.deepcopy(self, memo).requires_grad_(trainable)

    def papers(self, prompt_ids) -> Tensor:
        """Paper ids as a LongTensor (B,), checked to be in range (a negative id would silently wrap around)."""
        ids = torch.as_tensor(list(prompt_ids), dtype=torch.long)
        bad = ids[(ids < 0) | (ids >= len(self.features))]
        if bad.numel():
            raise ValueError(f"paper id {bad[0].item()} is out of range: this policy has papers 0..{len(self.features) - 1}")
        return ids

    def _logits(self, papers: Tensor, chosen: Tensor, step: Tensor, last: Tensor, temperature: float) -> Tensor:
        """Masked logits over the S_MAX sentences and STOP, (N, S_MAX + 1), for N states."""
        uniq, inverse = papers.unique(return_inverse=True)  # encode each paper once, not once per state
        e = torch.tanh(self.encode(self.features[uniq]))[inverse]  # (N, S, h)
        m = (chosen.unsqueeze(-1) * e).sum(1) / chosen.sum(1, keepdim=True).clamp_min(1)  # (N, h)
        cand = torch.cat([e, self.stop_vec.expand(len(e), 1, -1)], 1)  # (N, S+1, h)
        idx = torch.arange(self.s_max + 1)
        gap = ((idx[None] - last[:, None]) / self.s_max).masked_fill(idx[None] == self.stop, 0.0)
        x = torch.cat([cand, m[:, None].expand_as(cand), cand * m[:, None], gap[..., None].to(cand),
                       (idx == self.stop).to(cand).expand(len(e), -1)[..., None]], -1)
        logits = self.out(torch.tanh(self.mix(x) + self.step_vec[step][:, None])).squeeze(-1) / temperature
        allowed = (idx[None] > last[:, None]) & (idx[None] < self.num_sentences[papers][:, None])
        allowed[:, self.stop] = step >= 1
        return logits.masked_fill(~allowed, -math.inf)

    def token_log_probs(self, samples: Samples, temperature: float | None = None) -> Tensor:
        """log q(token_t | paper, tokens_<t) at temperature (default ``self.temperature``): (B, T), 0 off the mask."""
        temperature = check_positive(self.temperature if temperature is None else temperature, "temperature")
        papers, tok, mask = self.papers(samples.prompt_ids), samples.tokens, samples.mask.to(torch.bool)
        if tok.dim() != 2 or tok.shape[1] > self.max_len or ((tok < 0) | (tok > self.stop)).any():
            raise ValueError(f"tokens must be (B, T <= {self.max_len}) with values in 0..{self.stop}")
        b, t = tok.shape
        sent = mask & (tok < self.stop)
        onehot = torch.zeros(b, t, self.s_max + 1, dtype=torch.bool).scatter_(2, tok[..., None], sent[..., None])
        chosen = (onehot[..., : self.s_max].long().cumsum(1) - onehot[..., : self.s_max].long()).bool()  # before t
        last = torch.cat([torch.full((b, 1), -1), torch.where(sent, tok, -1)[:, :-1]], 1)
        logits = self._logits(papers.repeat_interleave(t), chosen.view(b * t, -1), torch.arange(t).repeat(b),
                              last.view(-1), temperature)
        lp = logits.log_softmax(-1).gather(1, tok.view(-1, 1)).view(b, t)
        return torch.where(mask, lp, torch.zeros((), dtype=lp.dtype))

    @torch.no_grad()
    def sample(self, prompt_ids, generator: torch.Generator | None = None, temperature: float | None = None) -> Samples:
        """One extract per paper id, token by token at temperature (default ``self.temperature``)."""
        temperature = check_positive(self.temperature if temperature is None else temperature, "temperature")
        papers = self.papers(prompt_ids)
        b = len(papers)
        tokens = torch.full((b, self.max_len), self.stop)
        mask = torch.zeros(b, self.max_len, dtype=torch.bool)
        chosen = torch.zeros(b, self.s_max, dtype=torch.bool)
        last, alive = torch.full((b,), -1), torch.ones(b, dtype=torch.bool)
        for t in range(self.max_len):
            probs = self._logits(papers, chosen, torch.full((b,), t), last, temperature).softmax(-1)
            tok = torch.where(alive, torch.multinomial(probs, 1, generator=generator).squeeze(1), self.stop)
            tokens[:, t], mask[:, t] = tok, alive
            alive = alive & (tok < self.stop)
            chosen[alive, tok[alive]] = True
            last = torch.where(alive, tok, last)
        return Samples(list(prompt_ids), tokens, mask)

    def log_probs_all(self, paper_ids, temperature: float | None = None, chunk: int = 16) -> Tensor:
        """Exact log q of every extract of ``all_outputs(S_MAX, max_len)`` for each paper: (P, K), -inf where
        the extract uses a sentence the paper lacks; differentiable."""
        from .summarize import all_outputs

        papers = self.papers(paper_ids)
        out, omask = all_outputs(self.s_max, self.max_len, stop=self.stop)
        valid = (torch.where(omask & (out < self.stop), out, 0)[None] < self.num_sentences[papers][:, None, None]).all(-1)  # (P, K)
        rows = []
        for i in range(0, len(papers), chunk):
            part = papers[i:i + chunk].tolist()
            s = Samples([p for p in part for _ in range(len(out))], out.repeat(len(part), 1), omask.repeat(len(part), 1))
            rows.append(self.token_log_probs(s, temperature).sum(-1).view(len(part), -1))
        return torch.where(valid, torch.cat(rows), -math.inf)


def target_samples(paper_ids: list, targets: list[list[int]], max_len: int, stop: int) -> Samples:
    """Samples holding given extracts (sentence indices in document order; STOP appended if shorter than max_len)."""
    tokens = torch.full((len(targets), max_len), stop)
    mask = torch.zeros(len(targets), max_len, dtype=torch.bool)
    for i, t in enumerate(targets):
        if not 1 <= len(t) <= max_len or sorted(set(t)) != list(t):
            raise ValueError(f"target {t} is not 1..{max_len} increasing sentence indices")
        tokens[i, : len(t)] = torch.tensor(t)
        mask[i, : min(len(t) + 1, max_len)] = True
    return Samples(list(paper_ids), tokens, mask)


def pretrain_reference(policy: ExtractivePolicy, paper_ids: list, targets: list[list[int]], steps: int = 60,
                       lr: float = 0.01, seed: int = 0) -> list[float]:
    """Maximum likelihood on one target extract per paper: full-batch Adam, ``steps`` steps. Returns the losses."""
    samples = target_samples(paper_ids, targets, policy.max_len, policy.stop)
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=lr)
    losses = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(check_int(steps, "steps")):
            loss = -policy.token_log_probs(samples).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


class RewardModel(nn.Module):
    """r(paper, extract) = w . tanh(mean_{j in extract} (E f_j + b) + c_len): a one-layer net on pooled features."""

    def __init__(self, dim: int, max_len: int = 3, hidden: int = 8, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.encode = nn.Linear(dim, hidden)
            self.length = nn.Parameter(torch.zeros(max_len, hidden))
            self.out = nn.Linear(hidden, 1)
        self.double()

    def forward(self, features: Tensor, chosen: Tensor) -> Tensor:
        """Rewards (P, K) of the K extracts ``chosen`` (K, S_MAX) bool for papers ``features`` (P, S_MAX, D)."""
        ind = chosen.to(features.dtype)
        count = ind.sum(1)
        pooled = torch.einsum("ks,psh->pkh", ind, self.encode(features)) / count[None, :, None]
        return self.out(torch.tanh(pooled + self.length[count.long() - 1])).squeeze(-1)


def bradley_terry_loss(r_a: Tensor, r_b: Tensor, label: Tensor) -> Tensor:
    """Mean of -[y log sigmoid(r_a - r_b) + (1 - y) log sigmoid(r_b - r_a)], y = 1 when a is preferred."""
    d = r_a - r_b
    return -(label * logsigmoid(d) + (1 - label) * logsigmoid(-d)).mean()


def preference_pairs(gold: Tensor, valid: Tensor, papers: list, per_paper: int, tau: float,
                     generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(paper row, a, b, label): per paper, pairs of distinct valid extracts drawn uniformly; a wins with
    probability sigmoid((gold_a - gold_b) / tau) (a noisy annotator; tau -> 0 always picks the gold winner)."""
    rows, a, b = [], [], []
    for i, p in enumerate(papers):
        cols = valid[p].nonzero().squeeze(1)
        first = torch.randint(len(cols), (per_paper,), generator=generator)
        second = (first + 1 + torch.randint(len(cols) - 1, (per_paper,), generator=generator)) % len(cols)
        rows.append(torch.full((per_paper,), i)), a.append(cols[first]), b.append(cols[second])
    rows, a, b = torch.cat(rows), torch.cat(a), torch.cat(b)
    g = gold[torch.as_tensor(papers)]
    win = torch.sigmoid((g[rows, a] - g[rows, b]) / check_positive(tau, "tau"))
    return rows, a, b, torch.bernoulli(win, generator=generator)


def train_reward_model(rm: RewardModel, features: Tensor, chosen: Tensor, valid: Tensor, gold: Tensor, papers: list,
                       pairs_per_paper: int = 60, tau: float = 0.03, steps: int = 300, lr: float = 0.02,
                       weight_decay: float = 2.0, seed: int = 0) -> list[float]:
    """Fit ``rm`` to noisy gold preferences between extracts of ``papers``: full batch, AdamW with decoupled
    ``weight_decay`` (the capacity knob: less decay fits the training papers' words more and generalises
    worse). Returns the losses."""
    g = torch.Generator().manual_seed(seed)
    rows, a, b, label = preference_pairs(gold, valid, papers, pairs_per_paper, tau, g)
    feats = features[torch.as_tensor(papers)]
    optimizer = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(check_int(steps, "steps")):
        r = rm(feats, chosen)
        loss = bradley_terry_loss(r[rows, a], r[rows, b], label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def pairwise_accuracy(scores: Tensor, gold: Tensor, valid: Tensor) -> tuple[float, float]:
    """Share of pairs of valid extracts with different gold rewards that ``scores`` orders like gold (a score tie
    counts one half), per paper over all its pairs, then averaged: (mean, standard error across papers)."""
    ds = scores[:, :, None] - scores[:, None, :]
    dg = gold[:, :, None] - gold[:, None, :]
    pair = valid[:, :, None] & valid[:, None, :] & (dg > 0)
    agree = (ds > 0).double() + 0.5 * (ds == 0).double()
    per_paper = (agree * pair).sum((1, 2)) / pair.sum((1, 2)).clamp_min(1)
    keep = pair.sum((1, 2)) > 0
    return mean_se(per_paper[keep])
