"""Write data/aclsum_abstracts.jsonl: the abstracts, aspect summaries and abstract highlights of ACLSum.

    pip install aclsum --no-deps          # or: pip download aclsum --no-deps -d DIR && unzip DIR/*.whl -d DIR/x
    python data/build_aclsum.py                       # reads the installed package's dataset/ folder
    python data/build_aclsum.py --source DIR/x/aclsum/dataset
    python data/build_aclsum.py --cc-by-only          # keep only papers from 2016 on (CC BY 4.0 text)

ACLSum (Takeshita, Green, Reinig, Eckert and Ponzetto, NAACL 2024, arXiv:2403.05303) annotates 250 ACL
Anthology papers (train/val/test: 100/50/100). The package `aclsum` (0.1.2, MIT) ships them as
{train,val,test}.jsonl; it needs Python >= 3.11 and `sienna` to import, so this script does not import it:
it only finds its folder and reads the JSON lines. Chapter 8 and `minivbon.summarize` read the output file,
so the project itself never needs `aclsum`.

One line per paper, in the order train, val, test and, within a split, the source file's order:

    {"id", "split", "year", "licence", "title", "abstract": [sentences],
     "summaries": {"challenge", "approach", "outcome"},
     "highlights": {"challenge": [0/1 per abstract sentence], "approach": [...], "outcome": [...]}}

``licence`` is the licence of the paper's text (title and abstract) under the ACL Anthology's policy:
CC-BY-4.0 for papers published from 2016 on, CC-BY-NC-SA-3.0 before (the year comes from the Anthology id).
The summaries and highlight labels are ACLSum's annotations (MIT). The output is deterministic: the same
source gives the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

SPLITS = ("train", "val", "test")
ASPECTS = ("challenge", "approach", "outcome")
OUT = Path(__file__).resolve().parent / "aclsum_abstracts.jsonl"


def find_source() -> Path:
    """The installed package's dataset/ folder, found without importing the package (its import needs sienna)."""
    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the package aclsum is not installed: pip install aclsum --no-deps, "
                         "or pass --source pointing at a folder with train.jsonl, val.jsonl and test.jsonl")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset"


def anthology_year(paper_id: str) -> int:
    """Publication year from an ACL Anthology id: "2021.acl-long.57" -> 2021, "P06-1112" -> 2006, "W99-0615" -> 1999."""
    new = re.match(r"^(\d{4})\.", paper_id)
    if new:
        return int(new.group(1))
    old = re.match(r"^[A-Z](\d{2})-\d{4}$", paper_id)
    if not old:
        raise ValueError(f"unrecognised ACL Anthology id {paper_id!r}")
    yy = int(old.group(1))
    return 1900 + yy if yy >= 60 else 2000 + yy


def compact(row: dict, split: str) -> dict:
    """The fields chapter 8 uses, checked: every aspect labels every abstract sentence with 0 or 1."""
    abstract = [s.strip() for s in row["sentences"]["abstract"]]
    if not abstract or not all(abstract):
        raise ValueError(f"paper {row['id']}: empty abstract or empty sentence")
    highlights = {}
    for aspect in ASPECTS:
        labels = [int(x) for x in row["highlights"][aspect]["abstract"]]
        if len(labels) != len(abstract) or set(labels) - {0, 1}:
            raise ValueError(f"paper {row['id']}: {aspect} labels do not match its {len(abstract)} abstract sentences")
        highlights[aspect] = labels
    year = anthology_year(row["id"])
    return {"id": row["id"], "split": split, "year": year, "licence": "CC-BY-4.0" if year >= 2016 else "CC-BY-NC-SA-3.0",
            "title": row["title"].strip(), "abstract": abstract,
            "summaries": {a: row["summary"][a].strip() for a in ASPECTS}, "highlights": highlights}


def build(source: Path, cc_by_only: bool = False) -> list[dict]:
    rows = []
    for split in SPLITS:
        path = source / f"{split}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} not found: --source must hold train.jsonl, val.jsonl and test.jsonl")
        with open(path, encoding="utf-8") as f:
            rows += [compact(json.loads(line), split) for line in f if line.strip()]
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("a paper id occurs twice across the splits")
    return [r for r in rows if r["licence"] == "CC-BY-4.0"] if cc_by_only else rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="folder with ACLSum's {train,val,test}.jsonl (default: the installed aclsum)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cc-by-only", action="store_true", help="keep only papers whose text is CC BY 4.0 (2016 on)")
    args = parser.parse_args(argv)
    rows = build(args.source or find_source(), args.cc_by_only)
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
    args.out.write_text(text, encoding="utf-8")
    data = text.encode("utf-8")
    counts = {s: sum(r["split"] == s for r in rows) for s in SPLITS}
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KiB, sha256 {hashlib.sha256(data).hexdigest()[:16]}): "
          f"{counts}, {sum(r['licence'] == 'CC-BY-4.0' for r in rows)} papers CC BY 4.0", file=sys.stderr)


if __name__ == "__main__":
    main()
