"""Causal language models as policies: loading (hub name or local path), sampling, log-probabilities.

``LMPolicy`` adapts a transformers causal LM to the policy interface of
:mod:`minivbon.policy` (``sample`` and ``token_log_probs``), so the same RLOO
loop that trains tabular policies trains GPT-2.
"""
from __future__ import annotations

import copy
import os
import socket
import threading
from pathlib import Path

import torch
from torch import Tensor, nn

from .checks import check_int, check_positive
from .policy import Samples


class HubUnavailableError(OSError):
    """A model or data set named on the Hugging Face hub could not be loaded."""


def hub_reachable(timeout: float = 1.0, host: str = "huggingface.co") -> bool:
    """Whether the hub answers within ``timeout`` seconds (a thread bounds slow DNS too)."""
    ok: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def hub_guard(name: str, load):
    """Run ``load(offline)`` for hub object ``name``; offline (env or unreachable) it fails in about a second.

    Without this an unreachable hub makes transformers and datasets retry for ~25 s before failing.
    """
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not hub_reachable()
    try:
        return load(offline)
    except OSError as e:
        why = "the hub is unreachable and it is not in the local cache" if offline else str(e).splitlines()[0]
        raise HubUnavailableError(
            f"could not load {name!r} ({why}). To continue offline use the local backend: "
            f"minivbon.sentiment.load_task('local'), which needs no network.") from None


def from_pretrained(loader, name_or_path: str, **kwargs):
    """``loader.from_pretrained`` for a local folder, or for a hub name through :func:`hub_guard`."""
    if Path(name_or_path).exists():
        return loader.from_pretrained(name_or_path, **kwargs)
    return hub_guard(name_or_path, lambda offline: loader.from_pretrained(name_or_path, local_files_only=offline,
                                                                          **kwargs))


def load_policy(name_or_path: str, device: str | torch.device | None = None):
    """(model, tokenizer) for a causal LM, by hub name or local path; left padding, a pad token, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = from_pretrained(AutoTokenizer, name_or_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = from_pretrained(AutoModelForCausalLM, name_or_path).to(device or "cpu").eval()
    return model, tokenizer


class LMPolicy(nn.Module):
    """A causal LM that continues prompts: ``prompts`` maps prompt id -> text (tokenised once, keyed by id).

    Dropout is switched off so that sampling and scoring see the same distribution. ``precision``:
    "fp32", or "bf16" to run the model's matmuls under bfloat16 autocast (for GPUs; the weights,
    the optimizer and every log-probability stay float32, and sums over tokens and the vBoN reward
    are taken in float32/float64).
    """

    def __init__(self, model, tokenizer, prompts: dict, max_new_tokens: int = 24, temperature: float = 1.0,
                 precision: str = "fp32"):
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.model, self.tokenizer, self.precision = model, tokenizer, precision
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens")
        self.temperature = check_positive(temperature, "temperature")
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        self.prompt_tokens = {}
        self.add_prompts(prompts)

    def add_prompts(self, prompts: dict) -> None:
        """Tokenise more prompts (id -> text)."""
        for pid, text in prompts.items():
            ids = self.tokenizer(text).input_ids
            if not ids:
                raise ValueError(f"prompt {pid!r} is empty after tokenisation")
            self.prompt_tokens[pid] = ids

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def clone(self, trainable: bool = False) -> "LMPolicy":
        """An independent copy of the weights (frozen by default: the reference for KL); shares the prompts."""
        twin = LMPolicy(copy.deepcopy(self.model).requires_grad_(trainable), self.tokenizer, {}, self.max_new_tokens,
                        self.temperature, self.precision)
        twin.prompt_tokens = self.prompt_tokens
        return twin

    def autocast(self):
        """The context the model runs in: bfloat16 autocast for precision="bf16", else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def prompt_batch(self, prompt_ids) -> tuple[Tensor, Tensor]:
        """The prompts' tokens left-padded to one width, and their attention mask: (B, width) each."""
        unknown = [p for p in prompt_ids if p not in self.prompt_tokens]
        if unknown:
            raise ValueError(f"prompt id {unknown[0]!r} is unknown to this policy (add it with add_prompts)")
        rows = [self.prompt_tokens[p] for p in prompt_ids]
        width = max(map(len, rows))
        x = torch.full((len(rows), width), self.tokenizer.pad_token_id)
        attn = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, width - len(r):], attn[i, width - len(r):] = torch.tensor(r), 1
        return x, attn

    @torch.no_grad()
    def sample(self, prompt_ids, generator: torch.Generator | None = None) -> Samples:
        """One continuation per prompt id, all in one ``generate`` call (left-padded prompts).

        Returns tokens (B, prompt width + new tokens) with mask True on generated tokens up to and
        including the first eos; extra holds the attention mask and the decoded texts.
        """
        x, attn = self.prompt_batch(prompt_ids)  # (B, width) each
        width, tok = x.shape[1], self.tokenizer
        if generator is not None:  # generate draws from the global RNG: seed it from ours
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        with self.autocast():
            out = self.model.generate(input_ids=x.to(self.device), attention_mask=attn.to(self.device),
                                      do_sample=True, top_k=0, top_p=1.0, temperature=self.temperature,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id)  # (B, T)
        new = out[:, width:]
        is_eos = (new == tok.eos_token_id).long()
        keep = (is_eos.cumsum(1) - is_eos) == 0  # up to and including the first eos
        mask = torch.cat([torch.zeros_like(attn, dtype=torch.bool).to(self.device), keep], 1)
        attention = torch.cat([attn.to(self.device), keep.long()], 1)
        texts = [tok.decode(seq[a.bool()], skip_special_tokens=True) for seq, a in zip(out, attention)]
        return Samples(list(prompt_ids), out, mask, {"attention_mask": attention, "texts": texts})

    def token_log_probs(self, samples: Samples) -> Tensor:
        """log q(token_t | tokens_<t) at temperature, (B, T); 0 on prompt, padding and after eos."""
        x = samples.tokens.to(self.device)
        attn = samples.extra["attention_mask"].to(self.device)
        positions = (attn.cumsum(1) - 1).clamp_min(0)  # as generate numbers left-padded positions
        generated = samples.mask.any(0).nonzero()
        start = max(1, int(generated[0])) if len(generated) else x.shape[1]  # first column with a generated token
        with self.autocast():  # logits only where a generated token is predicted: positions start-1 .. T-2
            logits = self.model(input_ids=x, attention_mask=attn, position_ids=positions,
                                logits_to_keep=x.shape[1] - start + 1).logits[:, :-1]  # (B, T-start, V)
        logp = (logits.float() / self.temperature).log_softmax(-1).gather(-1, x[:, start:, None]).squeeze(-1)
        return torch.cat([logp.new_zeros(len(x), start), logp], 1) * samples.mask.to(self.device)  # (B, T)
