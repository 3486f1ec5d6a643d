"""A trainer's state on disk and in time: checkpoints that resume bit for bit, loaded all or nothing, and
updates that Ctrl-C cannot cut in half.

``Checkpointed`` is the part of :class:`minivbon.loop.Trainer` that saves and restores its state (policy,
optimiser, random generators, J-BOND's anchor, step, history); ``interrupts_held`` is how the trainer makes
one update atomic with respect to Ctrl-C.
"""
from __future__ import annotations

import copy
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict

import torch

from .storage import load_safe, save_atomic


class Checkpointed:
    """Save and load for a trainer with ``policy``, ``optimizer``, ``generator``, ``anchor`` (or None),
    ``config``, ``step``, ``history`` and ``eval_pending``."""

    def save(self, path) -> None:
        """Write everything needed to resume bit-for-bit, atomically: a failed save keeps the old file."""
        save_atomic({"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "generator": self.generator.get_state(), "rng": torch.get_rng_state(), "step": self.step,
                     "history": self.history, "config": asdict(self.config),
                     "anchor": self.anchor.state_dict() if self.anchor is not None else None,
                     "eval_pending": self.eval_pending}, path)

    def load(self, path) -> "Checkpointed":
        """Restore a checkpoint written by :meth:`save` into this trainer (same policy and config).

        Read with the safe loader: a file holding anything but plain data is refused, never run."""
        state = load_safe(path)
        keys = {"policy", "optimizer", "generator", "rng", "step", "history", "config"}
        if not isinstance(state, dict) or keys - set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else "everything"
            raise ValueError(f"{path} is not a minivbon checkpoint (missing {missing})")
        if state["config"] != asdict(self.config):
            raise ValueError(f"{path}: checkpoint config {state['config']} does not match this trainer's "
                             f"{asdict(self.config)}")
        step, history = state["step"], state["history"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{path}: step must be an integer >= 0, got {step!r}")
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise ValueError(f"{path}: history must be a list of records (dicts), got {type(history).__name__}")
        if self.anchor is not None and state.get("anchor") is None:
            raise ValueError(f"{path} has no anchor, which method 'jbond' needs")
        before = self._state_copy()
        part = "policy"
        try:  # all or nothing: a part that does not fit restores everything loaded so far
            self.policy.load_state_dict(state["policy"])
            part = "optimizer"
            self.optimizer.load_state_dict(state["optimizer"])
            if self.anchor is not None:
                part = "anchor"
                self.anchor.load_state_dict(state["anchor"])
            part = "generator"
            self.generator.set_state(state["generator"])
            part = "rng"
            torch.set_rng_state(state["rng"])
        except Exception as e:
            self._restore(before)
            raise ValueError(f"{path}: its {part} state does not fit this trainer, nothing was changed: "
                             f"{type(e).__name__}: {str(e).strip()[:400]}") from None
        self.step, self.history, self.eval_pending = step, history, bool(state.get("eval_pending", False))
        return self

    def _state_copy(self) -> dict:
        clone = lambda d: {k: v.detach().clone() for k, v in d.items()}  # noqa: E731
        return {"policy": clone(self.policy.state_dict()), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "anchor": clone(self.anchor.state_dict()) if self.anchor is not None else None,
                "generator": self.generator.get_state(), "rng": torch.get_rng_state()}

    def _restore(self, saved: dict) -> None:
        self.policy.load_state_dict(saved["policy"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.anchor is not None:
            self.anchor.load_state_dict(saved["anchor"])
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["rng"])


@contextmanager
def interrupts_held():
    """Hold Ctrl-C (SIGINT) back while the block runs, then raise it: the block is never cut in half. Outside
    the main thread, where no signal handler can be set, the block runs as is (SIGINT goes to the main thread)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught, previous = [], signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
