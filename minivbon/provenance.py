"""Where a results file's numbers come from: a fingerprint of the data and models, and the versions.

Every results file in ``experiments/results`` records ``provenance(...)``. A script that resumes a file
(the sentiment sweep) compares it with the current one and refuses to mix runs made on other data, other
models, another minivbon or another torch: :func:`check_same_provenance` names every field that differs.

- local backend: a SHA-256 over the data folder's files (prompts, tokenizer, model weights and config);
- hub backend: the model names and the commits they were loaded at (the hub's own fingerprint);
- a toy world: a SHA-256 over its tensors (reference logits and rewards).
"""
from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch


def folder_fingerprint(folder, pattern: str = "*") -> str:
    """SHA-256 over the files under ``folder`` that match ``pattern`` (relative path and bytes, in sorted
    order); hidden files and ``__pycache__`` left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist or is not a folder")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob(pattern) if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        digest.update(str(rel.as_posix()).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def tensors_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 over tensors' dtypes, shapes and values (a toy world's data)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def task_fingerprint(settings: dict) -> dict:
    """The fingerprint of a sentiment task from its ``settings`` (``SentimentTask.settings``): the local
    backend's data folder hashed, or the hub models' names and commits."""
    policy = Path(str(settings.get("policy", "")))
    if policy.is_dir():  # local files: the model's folder and, next to it, the prompts (what the task reads; the
        # data folder's scripts and README are left out, so an editable and a wheel install agree)
        return {"kind": "local", "model_sha256": folder_fingerprint(policy),
                "prompts_sha256": folder_fingerprint(policy.parent, "prompts_*.jsonl"),
                "reward": str(settings.get("reward"))}
    return {"kind": "hub", "policy": str(settings.get("policy")),
            "policy_commit": str(settings.get("model_fingerprint")),
            "reward": str(settings.get("reward")), "prompts": str(settings.get("prompts"))}


def library_version() -> str:
    try:
        return version("minivbon")
    except PackageNotFoundError:
        return "unknown (not installed)"


def provenance(fingerprint: dict) -> dict:
    """What a results file records: the data/model ``fingerprint``, minivbon's version and torch's."""
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
    return {"fingerprint": fingerprint, "library_version": library_version(), "torch": torch.__version__}


def provenance_differences(recorded: dict, current: dict) -> list[str]:
    """Every field of two provenances that differs, as 'field: recorded -> current' lines."""
    out = []
    for key in ("library_version", "torch"):
        if recorded.get(key) != current.get(key):
            out.append(f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}")
    a, b = recorded.get("fingerprint") or {}, current.get("fingerprint") or {}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"fingerprint {key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def check_same_provenance(recorded, current: dict, path) -> None:
    """Refuse (ValueError) to add runs to ``path`` if it was made with other data, models or versions."""
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: its 'provenance' must be a dict, got {type(recorded).__name__}: the file is "
                         "corrupt or not a minivbon results file")
    differ = provenance_differences(recorded, current)
    if differ:
        raise ValueError(f"{path} was made with other data, models or versions than this run, so its runs cannot be "
                         f"mixed with new ones; what differs (recorded -> now): {'; '.join(differ)}. Use --out for a "
                         "new file, or go back to the recorded data and versions")
