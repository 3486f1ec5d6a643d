"""An enumerable string world: small enough to list every string, so pi_bon is exact.

Strings have a fixed ``length`` over ``vocab`` symbols (4 symbols and length 6
give 4096 strings per prompt). The reference is a first-order tabular model
(next-symbol logits given prompt, position and previous symbol); the reward is
a random unigram-plus-bigram score (continuous, so almost surely no ties).
``TabularPolicy`` implements the policy interface of :mod:`minivbon.policy`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .bon import bon_probs, expected_reward, kl_divergence, win_rate
from .checks import check_int, check_positive
from .policy import Samples


def all_strings(vocab: int, length: int) -> Tensor:
    """Every string, in lexicographic order: LongTensor (vocab**length, length)."""
    digits = vocab ** torch.arange(length - 1, -1, -1)
    return torch.arange(vocab**length)[:, None] // digits % vocab


class TabularPolicy(nn.Module):
    """Autoregressive policy with a table of logits per prompt and context.

    context="prefix": one row of logits per (prompt, whole prefix): any
    distribution over strings is representable. context="previous": one row
    per (prompt, position, previous symbol): first order, like the reference.
    """

    def __init__(self, logits: Tensor, vocab: int, length: int, context: str = "prefix"):
        super().__init__()
        if context not in ("prefix", "previous"):
            raise ValueError(f"context must be 'prefix' or 'previous', got {context!r}")
        self.vocab, self.length, self.context = vocab, length, context
        states = length * (vocab + 1) if context == "previous" else sum(vocab**t for t in range(length))
        if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[1:] != (states, vocab):
            raise ValueError(f"logits must be a (prompts, {states}, {vocab}) tensor for vocab={vocab}, length={length}, "
                             f"context={context!r}, got {getattr(logits, 'shape', type(logits).__name__)}")
        self.logits = nn.Parameter(logits.clone())  # (P, states, V)

    @classmethod
    def from_first_order(cls, ref_logits: Tensor, context: str = "prefix") -> "TabularPolicy":
        """A policy equal to the first-order model ``ref_logits`` (P, L, V+1, V), in either table layout."""
        p, length, _, vocab = ref_logits.shape
        if context == "previous":
            return cls(ref_logits.reshape(p, length * (vocab + 1), vocab), vocab, length, context)
        rows = []
        for t in range(length):  # every prefix of length t, its last symbol (or the start symbol V)
            prev = all_strings(vocab, t)[:, -1] if t else torch.full((1,), vocab)
            rows.append(ref_logits[:, t, prev])  # (P, V^t, V)
        return cls(torch.cat(rows, 1), vocab, length, context)

    def states(self, tokens: Tensor) -> Tensor:
        """Table row used at each position: (B, L) from tokens (B, L) (only the prefix matters)."""
        b, v = tokens.shape[0], self.vocab
        if self.context == "previous":
            prev = torch.cat([torch.full((b, 1), v), tokens[:, :-1]], 1)
            return torch.arange(self.length) * (v + 1) + prev
        out = torch.empty_like(tokens)
        code, offset = torch.zeros(b, dtype=torch.long), 0
        for t in range(self.length):
            out[:, t] = offset + code
            code, offset = code * v + tokens[:, t], offset + v**t
        return out

    def prompt_index(self, prompt_ids) -> Tensor:
        """Prompt ids as row indices (B,); ids are 0..P-1 (a negative id would silently wrap around)."""
        prompts = torch.as_tensor(list(prompt_ids), dtype=torch.long)
        bad = prompts[(prompts < 0) | (prompts >= self.logits.shape[0])]
        if bad.numel():
            raise ValueError(f"prompt id {bad[0].item()} is out of range: this policy has prompts 0..{self.logits.shape[0] - 1}")
        return prompts

    def token_log_probs(self, samples: Samples) -> Tensor:
        """log q(y_t | prompt, y_<t) for each position: (B, L)."""
        prompts = self.prompt_index(samples.prompt_ids)[:, None]  # (B, 1)
        logits = self.logits[prompts, self.states(samples.tokens)]  # (B, L, V)
        return logits.log_softmax(-1).gather(-1, samples.tokens[..., None]).squeeze(-1)

    @torch.no_grad()
    def sample(self, prompt_ids, generator: torch.Generator | None = None) -> Samples:
        """One string per entry of ``prompt_ids``, drawn symbol by symbol."""
        prompts = self.prompt_index(prompt_ids)
        tokens = torch.zeros(len(prompts), self.length, dtype=torch.long)
        for t in range(self.length):
            rows = self.states(tokens)[:, t]  # later positions are still 0 but row t only reads the prefix
            probs = self.logits[prompts, rows].softmax(-1)  # (B, V)
            tokens[:, t] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return Samples(prompts.tolist(), tokens, torch.ones_like(tokens, dtype=torch.bool))

    def log_probs_all(self, strings: Tensor) -> Tensor:
        """Exact log q(y | prompt) of every string (S, L), for every prompt: (P, S); differentiable."""
        p = self.logits.shape[0]
        samples = Samples(torch.arange(p).repeat_interleave(len(strings)).tolist(), strings.repeat(p, 1),
                          torch.ones(p * len(strings), self.length, dtype=torch.bool))
        return self.token_log_probs(samples).sum(-1).view(p, -1)


@dataclass
class StringWorld:
    """Reference model, reward and enumeration for a few prompts. Build one with :func:`make_world`."""

    ref_logits: Tensor  # (P, L, V+1, V): next-symbol logits given position and previous symbol (V = start)
    unigram: Tensor  # (P, L, V): reward for symbol v at position t
    bigram: Tensor  # (V, V): reward for symbol pair (u, v) at consecutive positions

    @property
    def num_prompts(self) -> int:
        return self.ref_logits.shape[0]

    @property
    def strings(self) -> Tensor:
        """(S, L) every string."""
        return all_strings(self.ref_logits.shape[-1], self.ref_logits.shape[1])

    def reward(self, prompt_ids, tokens: Tensor) -> Tensor:
        """r(prompt, y) = sum_t unigram[prompt, t, y_t] + sum_t bigram[y_{t-1}, y_t]: (B,)."""
        prompts = torch.as_tensor(list(prompt_ids), dtype=torch.long)[:, None]
        if ((prompts < 0) | (prompts >= self.num_prompts)).any():
            raise ValueError(f"prompt ids must be in 0..{self.num_prompts - 1}, got {prompts.flatten().tolist()[:8]}")
        uni = self.unigram[prompts, torch.arange(tokens.shape[1]), tokens].sum(-1)
        return uni + self.bigram[tokens[:, :-1], tokens[:, 1:]].sum(-1)

    def reference(self, context: str = "previous") -> TabularPolicy:
        """The reference model as a frozen policy."""
        return TabularPolicy.from_first_order(self.ref_logits, context).requires_grad_(False)

    @torch.no_grad()
    def ref_log_probs(self) -> Tensor:
        """Exact log pi(y | prompt) of every string: (P, S)."""
        return self.reference().log_probs_all(self.strings)

    def rewards_all(self) -> Tensor:
        """Reward of every string for every prompt: (P, S)."""
        s = self.strings
        return torch.stack([self.reward([p] * len(s), s) for p in range(self.num_prompts)])

    def bon_probs(self, n: int) -> Tensor:
        """Exact pi_bon of every string for every prompt: (P, S)."""
        return bon_probs(self.ref_log_probs().exp(), self.rewards_all(), n)

    @torch.no_grad()
    def exact_metrics(self, policy: TabularPolicy, n: int) -> dict:
        """Averaged over prompts, by enumeration: KL(q || pi_bon), KL(q || pi), E_q[r], win rate of q vs pi."""
        q = policy.log_probs_all(self.strings).double().exp()  # (P, S)
        p, r = self.ref_log_probs().exp(), self.rewards_all()
        return {"kl_to_bon": kl_divergence(q, bon_probs(p, r, n)).mean().item(),
                "kl_to_ref": kl_divergence(q, p).mean().item(),
                "exact_reward": expected_reward(q, r).mean().item(),
                "win_rate": win_rate(q, p, r).mean().item()}


def make_world(num_prompts: int = 4, vocab: int = 4, length: int = 6, peakedness: float = 1.0,
               seed: int = 0) -> StringWorld:
    """A random but fixed world; ``peakedness`` scales the reference logits (larger = less uniform)."""
    check_positive(peakedness, "peakedness")
    for name, value in [("num_prompts", num_prompts), ("vocab", vocab), ("length", length)]:
        check_int(value, name, minimum=1)
    if vocab**length > 2**22:
        raise ValueError(f"vocab**length = {vocab**length} strings is too many to enumerate (max 2**22)")
    g = torch.Generator().manual_seed(seed)
    ref_logits = peakedness * torch.randn(num_prompts, length, vocab + 1, vocab, generator=g, dtype=torch.float64)
    unigram = torch.randn(num_prompts, length, vocab, generator=g, dtype=torch.float64)
    bigram = torch.randn(vocab, vocab, generator=g, dtype=torch.float64)
    return StringWorld(ref_logits, unigram, bigram)
