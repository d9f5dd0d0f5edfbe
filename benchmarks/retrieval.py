"""Quark's own retrieval on a laptop CPU: embedding model, reranker, index, grounded answers.

Everything runs through the `quark` CLI in a temporary home, as a user would run it:

    1. a 512-piece tokenizer and token set from a dozen standard-library modules; `quark pretrain`
       a 2-layer, 64-wide model (benchmarks/alignment.py's) for PRETRAIN steps, context 1024; and
       the embedding's own base, the same model pretrained EMBED_PRETRAIN steps on those files plus
       every top-level standard-library file outside quark.data.synth.DEFAULT_MODULES (whose
       functions the held-out pairs are drawn from);
    2. `quark finetune embed --builtin stdlib` from the embedding's base and
       `quark finetune rerank --builtin stdlib` from the base;
    3. on the held-out built-in pairs (queries from the held-out 20%, every core pair's passage in
       the corpus — the core train passages are distractors): recall@10 and MRR of BM25 alone
       (FTS5), the embedding base's untrained pooled states, the trained embedding, hybrid
       (reciprocal-rank fusion of BM25 and the embedding) and hybrid + reranker (top 20 re-scored);
    4. embedding throughput against a bare forward pass of the same network and batches, and
       `quark index add` of standard-library files (docs/s, chunks/s);
    5. `quark data synth --kind grounded`, then citation coverage (held-out grounded prompts whose
       greedy reply cites the right source) of the base and after `quark finetune sft` on it (RA-FT).

    python benchmarks/retrieval.py            # print
    python benchmarks/retrieval.py --write    # also record under benchmarks/RESULTS.md
    python benchmarks/retrieval.py --home DIR # keep the home; a re-run reuses the stages already done
"""

from __future__ import annotations

import argparse
import os
import platform
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
from _results import write_section  # benchmarks/_results.py
from alignment import MODULES, TINY, quark, token_set  # benchmarks/alignment.py

from quark.data.synth import DEFAULT_MODULES
from quark.home import Home
from quark.inference import Engine, SamplingParams
from quark.modelfolder import load_model, load_tokenizer
from quark.retrieval import metrics
from quark.retrieval.embedding import embed_texts, load_head, pad_texts
from quark.retrieval.grounding import citations
from quark.retrieval.hybrid import fuse
from quark.retrieval.pairs import bm25_ranking, read_text_pairs
from quark.retrieval.reranker import Reranker
from quark.tokenizer import Tokenizer
from quark.tokenizer.token_shards import TokenWriter

SECTION = "## Retrieval"
PRETRAIN, EMBED_PRETRAIN, EMBED, RERANK, RAFT = 300, 3000, 1500, 200, 150
LONG = ["--set", "model.max_seq_len=1024"]
BASE = [*TINY, *LONG, "--set", "train.seq_len=64", "--set", "train.micro_batch=8", "--set", "optim.warmup=10"]


def wide_token_set(home: Path) -> int:
    """tokens/wide (tokenizer tok): alignment.MODULES, then every top-level standard-library file
    outside DEFAULT_MODULES; the same two files held out as tokens/code. Its token count."""
    root = Home.open(home)
    tok = Tokenizer.load(root.tokenizer_dir("tok"))
    lib = Path(sysconfig.get_paths()["stdlib"])
    core = {m.split(".")[0] for m in DEFAULT_MODULES}
    files = [lib / n for n in MODULES] + [f for f in sorted(lib.glob("*.py"))
                                          if f.stem not in core and f.name not in MODULES]
    writer = TokenWriter(root.tokens_dir("wide"), tok.vocab_size)
    total = 0
    for i, f in enumerate(files):
        ids = tok.encode(f.read_text(encoding="utf-8", errors="replace")) + [tok.eos_id]
        total += len(ids)
        writer.add("val" if i < 2 else "train", ids)
    writer.close(tokenizer="tok")
    return total


def stage(home: Path, name: str, *args: str) -> tuple[dict, float]:
    """`quark ARGS` once per home: its JSON result and seconds are kept in stages/NAME.json."""
    import json

    record = home / "stages" / f"{name}.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        return saved["result"], saved["seconds"]
    result, took = quark(home, *args)
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps({"result": result, "seconds": took}))
    return result, took


def evaluate(home: Path, base: str = "embbase", emb: str = "emb",
             rr: str = "rr") -> tuple[list[tuple[str, float, float]], int, int]:
    """The table's rows. The corpus is the core pairs' passages (held-out and train), not the wider
    training pairs' (quark.retrieval.pairs.write_pairs), so it is the same 724 either way."""
    import json

    root = Home.open(home)
    folder = root.dataset_dir("stdlib-pairs")
    core = json.loads((folder / "meta.json").read_text())["counts"].get("core_train")
    train = read_text_pairs(folder / "train.jsonl")[:core]
    val = read_text_pairs(folder / "val.jsonl")
    corpus = list(dict.fromkeys([p.positive for p in val] + [p.positive for p in train]))
    index = {t: i for i, t in enumerate(corpus)}
    relevant = [{index[p.positive]} for p in val]
    queries = [p.query for p in val]

    def dense(name: str) -> list[list[int]]:
        folder = root.model_dir(name)
        model, tok = load_model(folder), load_tokenizer(folder)
        head = load_head(folder, model.config.n_embd)
        return metrics.dense_rankings(embed_texts(model, tok, queries, head=head),
                                      embed_texts(model, tok, corpus, head=head), 100)

    runs = {"BM25 alone (FTS5)": bm25_ranking(queries, corpus, 100),
            "untrained pooled states (the base)": dense(base),
            "trained embedding (`finetune embed`)": dense(emb)}
    hybrid = [[r.id for r in fuse(a, b)][:100]
              for a, b in zip(runs["BM25 alone (FTS5)"], runs["trained embedding (`finetune embed`)"])]
    runs["hybrid (BM25 + embedding, RRF)"] = hybrid
    reranker = Reranker.load(root.model_dir(rr))
    reranked = []
    for query, ranking in zip(queries, hybrid):
        pool = ranking[:20]
        order = reranker.rank(query, [corpus[i] for i in pool])
        reranked.append([pool[i] for i in order] + ranking[20:])
    runs["hybrid + reranker (top 20)"] = reranked
    table = [(label, metrics.recall_at_k(r, relevant, 10), metrics.mrr(r, relevant)) for label, r in runs.items()]
    return table, len(val), len(corpus)


def throughput(home: Path) -> tuple[float, float]:
    """(embed texts/s, bare forward texts/s) on the same 256 chunks of stdlib text, batches of 32."""
    folder = Home.open(home).model_dir("emb")
    model, tok = load_model(folder), load_tokenizer(folder)
    head = load_head(folder, model.config.n_embd)
    lib = Path(sysconfig.get_paths()["stdlib"])
    text = (lib / "argparse.py").read_text()
    texts = [text[i:i + 400] for i in range(0, 400 * 256, 400)]
    started = time.perf_counter()
    embed_texts(model, tok, texts, head=head)
    embed_s = time.perf_counter() - started
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(texts), 32):
            idx, _ = pad_texts(tok, [texts[i] for i in order[start:start + 32]], model.config.max_seq_len)
            model(idx, return_hidden=True)
    bare_s = time.perf_counter() - started
    return len(texts) / embed_s, len(texts) / bare_s


def coverage(folder: Path, rows: list[dict], max_tokens: int = 24) -> tuple[float, float]:
    """(coverage, precision) of greedy replies to grounded prompts: cites the gold source; share
    of citations that are gold."""
    engine = Engine.load(folder)
    covered, cited, gold_cited = 0, 0, 0
    for row in rows:
        prompt = row["messages"][:-1]
        ids = engine.tokenizer.encode_chat(prompt, add_generation_prompt=True)
        reply = engine.generate([ids], [SamplingParams(max_tokens=max_tokens, temperature=0.0)])[0].text
        found = citations(reply, len(row["sources"]))
        covered += any(n in row["gold"] for n in found)
        cited += len(found)
        gold_cited += sum(n in row["gold"] for n in found)
    return covered / len(rows), gold_cited / cited if cited else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--home", type=Path, help="keep the home here (and reuse the stages a run left in it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "tokens" / "code").is_dir():
            token_set(home)
        base, took = stage(home, "base", "pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "base",
                           *BASE, "--max-steps", str(PRETRAIN), "--eval-every", str(PRETRAIN))
        notes.append(f"`quark pretrain` base (2 layers, hidden 64, {base['parameters']:,} parameters), "
                     f"{PRETRAIN} steps: "
                     f"val loss {base['val_loss']:.3f}, {took:.0f} s")
        if not (home / "tokens" / "wide").is_dir():
            wide_token_set(home)
        embbase, took = stage(home, "embbase", "pretrain", "--recipe", "tiny-cpu", "--data", "wide", "--name",
                              "embbase", *BASE, "--max-steps", str(EMBED_PRETRAIN), "--eval-every", str(EMBED_PRETRAIN))
        notes.append(f"the embedding's base: the same model pretrained {EMBED_PRETRAIN} steps on `tokens/wide` "
                     "(those files and every top-level stdlib file outside the pairs' core modules): "
                     f"val loss {embbase['val_loss']:.3f} (same held-out files), {took:.0f} s")
        emb, took = stage(home, "emb", "finetune", "embed", "--model", "embbase", "--builtin", "stdlib", "--name",
                          "emb", "--set", "train.seq_len=64", "--set", "train.micro_batch=16",
                          "--max-steps", str(EMBED), "--eval-every", str(EMBED))
        notes.append(f"`quark finetune embed --builtin stdlib`, {EMBED} steps ({emb['train_pairs']} train pairs, "
                     f"1 mined hard negative each, 64 tokens per text, 16 pairs per batch): held-out recall@10 "
                     f"{emb['val_recall_at_10']:.3f} (held-out passages only), {took:.0f} s")
        rr, took = stage(home, "rr", "finetune", "rerank", "--model", "base", "--builtin", "stdlib", "--name", "rr",
                         "--set", "train.seq_len=96", "--max-steps", str(RERANK), "--eval-every", str(RERANK))
        notes.append(f"`quark finetune rerank --builtin stdlib`, {RERANK} steps: held-out supported-over-twin "
                     f"**{rr['val_twin_accuracy']:.3f}** over {rr['val_twin_questions']} questions with a twin "
                     "(gate 0.80), "
                     f"supported-over-hard-negative {rr['val_negative_accuracy']:.3f}; {took:.0f} s")
        table, n_val, n_corpus = evaluate(home)
        texts_s, bare_s = throughput(home)
        notes.append(f"embedding throughput {texts_s:.0f} texts/s vs a bare forward pass {bare_s:.0f} texts/s "
                     "of the same "
                     f"batches: ratio **{texts_s / bare_s:.2f}** (256 texts of 400 characters, batches of 32)")
        lib = Path(sysconfig.get_paths()["stdlib"])
        files = sorted(lib.glob("*.py"))[:40]
        folder = home / "docs"
        folder.mkdir(exist_ok=True)
        for f in files:
            (folder / f.name).write_bytes(f.read_bytes())
        added, took = stage(home, "index", "index", "add", "stdlib", str(folder), "--model", "emb")
        notes.append(f"`quark index add` of {len(files)} stdlib files ({added['chunks_written']:,} chunks): "
                     f"{len(files) / added['seconds']:.1f} docs/s, "
                     f"{added['chunks_written'] / added['seconds']:.0f} chunks/s "
                     f"(chunking, embedding, writing; {took:.0f} s with start-up)")
        stage(home, "rag", "data", "synth", "--kind", "grounded", "--name", "rag", "--val-fraction", "0.15")
        held_out = [r for r in _rows(home / "data" / "rag" / "val.jsonl")]
        before = coverage(home / "models" / "base", held_out)
        sft, took = stage(home, "rag-sft", "finetune", "sft", "--model", "base", "--data", "rag", "--name", "rag",
                          "--set", "train.seq_len=1024", "--set", "train.micro_batch=4", "--max-steps", str(RAFT),
                          "--eval-every", str(RAFT))
        after = coverage(home / "models" / "rag", held_out)
        notes.append(f"RA-FT: `quark finetune sft` on `quark data synth --kind grounded` ({RAFT} steps, {took:.0f} s); "
                     f"citation coverage on {len(held_out)} held-out grounded prompts "
                     f"**{before[0]:.2f} → {after[0]:.2f}** "
                     f"(precision {before[1]:.2f} → {after[1]:.2f}); the blueprint aims at ≥ 0.90")
    text = (f"{SECTION}\n\n`python benchmarks/retrieval.py --write` — 2026-12-01\n\n"
            f"Machine: 2-core CPU, shared ({platform.processor() or platform.machine()}, load average "
            f"{os.getloadavg()[0]:.1f} at the end), 1 torch thread, torch {torch.__version__}. "
            "Held-out built-in pairs: "
            f"{n_val} queries (docstring→source, signature→docstring, doc heading→section), each ranking a corpus of "
            f"{n_corpus:,} passages (every core pair's, train ones as distractors).\n\n"
            "| retrieval | recall@10 | MRR |\n|---|---:|---:|\n"
            + "".join(f"| {label} | {r:.3f} | {m:.3f} |\n" for label, r, m in table)
            + "\n" + "".join(f"- {n}\n" for n in notes))
    print(text)
    if args.write:
        write_section(SECTION, text)


def _rows(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
