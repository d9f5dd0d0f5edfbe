"""Retrieval-augmented training data (the blueprint's RA-FT), from the standard library.

For each documented function whose source is a chunk of its module's file, a question about it
is asked with numbered sources: that chunk (its real path and line span) and DISTRACTORS other
chunks, shuffled. The answer is the docstring's summary citing the right number. Rows are chat
JSONL, so `quark finetune sft` trains on them as on any chat data, with what the row was built
from kept beside the messages:

    {"messages": [system with the sources, user question, assistant "… [2]"],
     "sources": [{"n": 1, "chunk_id": "shlex.py:301-318", ...}, ...], "gold": [2]}

Preference pairs (`preferences.jsonl` in the same folder) prompt the same way; the chosen answer
cites the right source, the rejected one adds a reference no source contains — a URL, a version
number or an identifier — which is what DPO should learn to penalise.
"""

from __future__ import annotations

import json
import random
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from quark.atomic import atomic_dir
from quark.data.synth import DEFAULT_MODULES, EXPLAIN_TEMPLATES, collect_functions, in_validation
from quark.errors import QuarkError
from quark.retrieval.chunking import Chunk, chunk_text
from quark.retrieval.grounding import Source, sources_block

DISTRACTORS = 2
SOURCE_CHARS = 400  # sized for a small model's context


def module_chunks(modules: Sequence[str]) -> dict[str, list[Chunk]]:
    """Chunks of each pure-Python module's file, keyed by its path relative to the stdlib."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    out = {}
    for module in modules:
        path = lib / (module.replace(".", "/") + ".py")
        if path.is_file():
            out[str(path.relative_to(lib))] = chunk_text(path.name, path.read_text(encoding="utf-8"))
    return out


def fabricated(rng: random.Random, module: str, name: str, corpus: str) -> str:
    """A reference that looks plausible and that no source contains."""
    for _ in range(20):
        kind = rng.randrange(3)
        if kind == 0:
            ref = f" See https://docs.python.org/3.{rng.randint(14, 19)}/library/{module}.html#{module}.{name}."
        elif kind == 1:
            ref = f" New in version {rng.randint(4, 9)}.{rng.randint(0, 12)}."
        else:
            ref = f" Use `{module}.{name}_{rng.choice(['ex', 'v2', 'safe', 'fast'])}()` instead."
        if ref.strip(" .") not in corpus:
            return ref
    raise QuarkError(f"could not fabricate a reference for {module}.{name}")


def grounded_rows(seed: int = 0, modules: Sequence[str] = DEFAULT_MODULES) -> list[tuple[str, dict, dict]]:
    """(group, chat row, preference row) per answerable function, deterministic for a seed."""
    rng = random.Random(seed)
    chunks = module_chunks(modules)
    everything = [(path, c) for path, cs in chunks.items() for c in cs]
    rows = []
    for f in collect_functions(modules):
        path = f.module.replace(".", "/") + ".py"
        gold = next((c for c in chunks.get(path, []) if c.title == f.name), None)
        if gold is None or len(everything) <= DISTRACTORS:
            continue
        picked = [(path, gold)]
        while len(picked) < DISTRACTORS + 1:
            candidate = rng.choice(everything)
            if candidate[1] is not gold and candidate not in picked:
                picked.append(candidate)
        rng.shuffle(picked)
        sources = [Source(n, f"{p}:{c.span}", p, c.start_line, c.end_line, c.text, c.title)
                   for n, (p, c) in enumerate(picked, 1)]
        right = next(s.n for s in sources if s.text is gold.text)
        system = sources_block(sources, SOURCE_CHARS)
        question = rng.choice(EXPLAIN_TEMPLATES).format(qual=f.qualname)
        answer = f"{f.summary} [{right}]"
        prompt = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        meta = {"sources": [{"n": s.n, "chunk_id": s.chunk_id, "path": s.path, "start_line": s.start_line,
                             "end_line": s.end_line} for s in sources], "gold": [right]}
        chat = {"messages": [*prompt, {"role": "assistant", "content": answer}], **meta}
        rejected = answer + fabricated(rng, f.module, f.name, "\n".join(s.text for s in sources))
        rows.append((f.qualname, chat, {"prompt": prompt, "chosen": answer, "rejected": rejected, **meta}))
    if not rows:
        raise QuarkError("no grounded examples: no documented function's source was found as a chunk")
    return rows


def write_grounded(folder: Path, *, seed: int = 0, val_fraction: float = 0.05) -> dict:
    """train.jsonl / val.jsonl (chat), preferences/{train,val}.jsonl and meta.json, atomically."""
    if not 0 < val_fraction < 1:
        raise QuarkError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    counts = {"train": 0, "val": 0}
    with atomic_dir(Path(folder)) as tmp:
        (tmp / "preferences").mkdir()
        handles = {(kind, split): open(base / f"{split}.jsonl", "w", encoding="utf-8")
                   for kind, base in (("chat", tmp), ("pref", tmp / "preferences")) for split in counts}
        try:
            for group, chat, pref in grounded_rows(seed):
                split = "val" if in_validation(group, seed, val_fraction) else "train"
                handles["chat", split].write(json.dumps(chat, ensure_ascii=False) + "\n")
                handles["pref", split].write(json.dumps(pref, ensure_ascii=False) + "\n")
                counts[split] += 1
        finally:
            for handle in handles.values():
                handle.close()
        meta = {"format": "chat", "kind": "grounded", "seed": seed, "val_fraction": val_fraction, "counts": counts,
                "distractors": DISTRACTORS, "preferences": "preferences/"}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
