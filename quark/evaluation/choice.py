"""Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness scores MMLU, ARC and HellaSwag.

Each question is a prompt; each choice a continuation. The model never generates: for every
choice we sum the log-probabilities of its tokens given the prompt,

    score(choice) = sum_t log p(continuation_t | prompt, continuation_<t)

`acc` counts the questions whose highest-scoring choice is the answer; `acc_norm` divides each
score by the continuation's length in characters first (so long answers are not penalised for
having more tokens), as the harness's `acc_norm` does. Both are reported overall and per subject.

The data is JSONL, one question per line, in MMLU's fields:

    {"question": "...", "choices": ["...", "...", ...], "answer": 2 | "C", "subject": "computer_security"}

`answer` is the index of the right choice (0-based) or its letter (A, B, C, ...); `subject` is
optional ("all" when absent). The prompt is

    The following is a multiple choice question about {subject}.

    {question}
    Answer:

and each continuation is " " + choice, so the MMLU subsets the plan names (business, computer
security, software engineering) run when a user exports them to this format.
"""

from __future__ import annotations

import inspect
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from quark.errors import QuarkError
from quark.jsonl import field, read_jsonl
from quark.models.llm import LLM
from quark.tokenizer import Tokenizer

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Question:
    id: str
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int


def prompt(question: Question) -> str:
    return (f"The following is a multiple choice question about {question.subject.replace('_', ' ')}.\n\n"
            f"{question.question}\nAnswer:")


def load_questions(path: Path, limit: int | None = None) -> list[Question]:
    questions = []
    for number, row in read_jsonl(path):
        text = field(path, number, row, "question", str)
        choices = field(path, number, row, "choices", list)
        if not 2 <= len(choices) <= len(LETTERS) or not all(isinstance(c, str) and c.strip() for c in choices):
            raise QuarkError(f"{path}:{number}: field 'choices' must be 2 to {len(LETTERS)} non-empty strings")
        answer = field(path, number, row, "answer", (int, str))
        if isinstance(answer, str):
            index = LETTERS.find(answer.strip().upper()) if len(answer.strip()) == 1 else -1
        else:
            index = answer
        if isinstance(answer, bool) or not 0 <= index < len(choices):
            raise QuarkError(f"{path}:{number}: field 'answer' must be a choice index 0-{len(choices) - 1} or a "
                             f"letter A-{LETTERS[len(choices) - 1]}, got {answer!r}")
        subject = field(path, number, row, "subject", str, default="all")
        questions.append(Question(f"{Path(path).name}:{number}", subject, text, tuple(choices), index))
        if limit and len(questions) >= limit:
            break
    if not questions:
        raise QuarkError(f"{path}: no questions")
    return questions


# Modules whose public functions the built-in set asks about; each module is a subject.
BUILTIN_MODULES = ("json", "math", "os.path", "shutil", "string", "textwrap", "itertools", "functools", "random",
                   "statistics", "re", "base64", "heapq", "bisect", "operator", "glob", "fnmatch", "zlib", "difflib",
                   "keyword", "html", "urllib.parse", "uuid", "secrets")


def builtin_questions(count: int = 60, *, seed: int = 0, choices: int = 4) -> list[Question]:
    """Questions from the standard library's documentation (its docstrings): which function of a
    module does what the first line of its docstring says. The distractors are other functions of
    the same module. Deterministic for a seed on a given Python version."""
    import importlib

    pool: list[tuple[str, str, str, list[str]]] = []  # (module, function, summary, other functions)
    for name in BUILTIN_MODULES:
        module = importlib.import_module(name)
        functions = {}
        for attr in sorted(getattr(module, "__all__", None) or dir(module)):
            value = getattr(module, attr, None)
            if attr.startswith("_") or not callable(value) or inspect.isclass(value):
                continue
            doc = (inspect.getdoc(value) or "").strip().splitlines()
            summary = doc[0].strip() if doc else ""
            if 15 <= len(summary) <= 160 and attr not in summary:
                functions[attr] = summary
        if len(functions) >= choices:
            pool += [(name, attr, summary, sorted(set(functions) - {attr})) for attr, summary in functions.items()]
    rng = random.Random(seed)
    picked = rng.sample(pool, min(count, len(pool)))
    questions = []
    for number, (module, function, summary, others) in enumerate(picked):
        options = [function, *rng.sample(others, choices - 1)]
        rng.shuffle(options)
        questions.append(Question(f"stdlib-{number}", module, f"Which function of Python's {module} module does "
                                  f"this: \"{summary}\"?", tuple(f"{module}.{option}" for option in options),
                                  options.index(function)))
    return questions


@torch.no_grad()
def loglikelihoods(model: LLM, tokenizer: Tokenizer, requests: Sequence[tuple[str, str]], *, batch_size: int = 16,
                   on_batch: Callable[[int], None] | None = None) -> list[float]:
    """sum log p(continuation | context) for each (context, continuation), in order.

    Context and continuation are tokenized apart (the continuation's leading space is its own),
    so a choice's tokens are the same whatever the question. A pair longer than the model's
    context loses tokens from the left of the context, never from the continuation.
    """
    limit = model.config.max_seq_len + 1
    encoded = []
    for context, continuation in requests:
        ctx, cont = [tokenizer.bos_id, *tokenizer.encode(context)], tokenizer.encode(continuation)
        if not cont:
            raise QuarkError(f"empty continuation after {context[-40:]!r}")
        if len(cont) >= limit:
            raise QuarkError(f"a choice of {len(cont)} tokens does not fit the model's context "
                             f"({model.config.max_seq_len})")
        encoded.append(((ctx + cont)[-limit:], len(cont)))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = [0.0] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))  # similar lengths batch together
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start: start + batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            for row, index in enumerate(batch):
                tokens = encoded[index][0]
                ids[row, : len(tokens)] = torch.tensor(tokens)
            ids = ids.to(device)
            logprobs = F.log_softmax(model(ids[:, :-1]).float(), dim=-1)
            for row, index in enumerate(batch):
                tokens, n_cont = encoded[index]
                targets = ids[row, len(tokens) - n_cont: len(tokens)]
                positions = torch.arange(len(tokens) - n_cont - 1, len(tokens) - 1, device=device)
                scores[index] = float(logprobs[row, positions, targets].sum())
            if on_batch:
                on_batch(len(batch))
    finally:
        model.train(was_training)
    return scores


def evaluate(model: LLM, tokenizer: Tokenizer, questions: Sequence[Question], *, batch_size: int = 16,
             on_batch: Callable[[int], None] | None = None) -> tuple[dict, list[dict]]:
    """(metrics, one row per question) for `questions`."""
    requests = [(prompt(q), f" {choice}") for q in questions for choice in q.choices]
    flat = loglikelihoods(model, tokenizer, requests, batch_size=batch_size, on_batch=on_batch)
    rows, start = [], 0
    by_subject: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for q in questions:
        scores = flat[start: start + len(q.choices)]
        start += len(q.choices)
        normalised = [score / len(choice) for score, choice in zip(scores, q.choices)]
        pick, pick_norm = _argmax(scores), _argmax(normalised)
        by_subject[q.subject].append((pick == q.answer, pick_norm == q.answer))
        rows.append({"id": q.id, "subject": q.subject, "answer": q.answer, "pick": pick, "pick_norm": pick_norm,
                     "loglikelihoods": [round(s, 4) for s in scores]})
    n = len(questions)
    per_subject = {subject: {"acc": sum(a for a, _ in hits) / len(hits),
                             "acc_norm": sum(b for _, b in hits) / len(hits), "n": len(hits)}
                   for subject, hits in sorted(by_subject.items())}
    metrics = {
        "questions": n,
        "acc": sum(row["pick"] == row["answer"] for row in rows) / n,
        "acc_norm": sum(row["pick_norm"] == row["answer"] for row in rows) / n,
        "acc_subject_mean": sum(s["acc"] for s in per_subject.values()) / len(per_subject),
        "chance": sum(1 / len(q.choices) for q in questions) / n,
        "per_subject": per_subject,
    }
    return metrics, rows


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])
