"""Built-in synthetic alignment data, made from what every Python install carries.

Chat examples (OpenAI `messages` format) of five kinds:
- write:    "Write a function `quote(s)` …<docstring summary>" -> the standard library's source.
- explain:  "What does `shlex.quote` do?" -> its signature and docstring summary.
- dialogue: templated multi-turn conversations about a module and its functions.
- tool:     tool-use traces in the agent loop's own format: the system prompt describes tools
            with the registry's real schemas (`chat_template.with_tools_prompt`, as a chat session
            with --tools does), the assistant calls `run_code` (OpenAI `tool_calls`; the content is
            the call's JSON), the `tool` turn carries the real sandbox result as `run_tool_call`
            returns it, and the answer quotes the printed value. A quarter of them offer the tools
            but need none (explain a function), so the model learns when not to call.
- refusal:  unsafe requests declined, with a safe alternative.

Preference pairs (prompt, chosen, rejected) for DPO and reward models, where the preference is
learnable: chosen is the right docstring or source, rejected is another function's, or the right
answer cut short.

Everything is deterministic for a seed (on a given Python version). The held-out split is chosen
by a hash of a group key (the function, module or template instance), so the same function never
lands in both splits.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import random
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.tokenizer.chat_template import tool_call_text

if TYPE_CHECKING:
    from quark.image.prompt_synth import ImageJudge

# Pure-Python standard-library modules with well-documented public functions.
DEFAULT_MODULES = (
    "base64", "bisect", "calendar", "colorsys", "copy", "csv", "difflib", "fnmatch", "fractions", "ftplib",
    "functools", "genericpath", "getopt", "glob", "gzip", "hashlib", "heapq", "html", "ipaddress", "json",
    "keyword", "linecache", "mimetypes", "ntpath", "operator", "os", "pathlib", "platform", "posixpath", "pprint",
    "quopri", "random", "re", "secrets", "shlex", "shutil", "statistics", "string", "tempfile", "textwrap",
    "tokenize", "urllib.parse", "uuid", "warnings", "zipfile",
)
SYSTEM_PROMPTS = (
    "You are Quark, a helpful assistant for programmers.",
    "You are a concise, accurate coding assistant.",
    "You are Quark. Answer clearly and say when you are unsure.",
)
# The tools a trace offers (registry groups or tool names), mostly run_code alone: what the demo's
# `quark chat --tools run_code` offers. A trace must fit the tiny model's 256-token context with the
# call, the result and the answer (SFT leaves longer ones out), and the `code` group's description
# alone (run_code and run_tests) takes ~190 of them with the demo's tokenizer.
TOOL_SETS = ("run_code", "run_code", "run_code", "web_search,run_code")
REAL_PROGRAMS = 24  # distinct programs run in the sandbox per dataset (see tool_examples)
MAX_SOURCE_LINES = 40


@dataclass(frozen=True)
class Function:
    module: str
    name: str
    signature: str  # "(s, *, posix=True)"
    summary: str    # first paragraph of the docstring, on one line
    source: str | None  # dedented source, when it is short Python

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


def collect_functions(modules: Sequence[str] = DEFAULT_MODULES) -> list[Function]:
    """Public functions defined (not re-exported) in `modules`, with a usable docstring."""
    found = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # removed in this Python version (uu, for one, since 3.13)
            continue
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if getattr(obj, "__module__", None) not in (module_name, None) and not inspect.isbuiltin(obj):
                continue
            described = described_signature(obj, name, inspect.getdoc(obj))
            if described is not None:
                found.append(Function(module_name, name, *described, _source(obj)))
    if not found:
        raise QuarkError(f"no documented functions found in modules {', '.join(modules)}")
    return found


def described_signature(obj: object, name: str, doc: str | None) -> tuple[str, str] | None:
    """(signature, docstring summary) of a callable worth a training pair: it has a signature and
    a summary of 15–300 characters that is not just the signature restated; else None."""
    summary = _summary(doc or "")
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return None
    if not 15 <= len(summary) <= 300 or summary.startswith(name + "("):
        return None
    return signature, summary


def _summary(doc: str) -> str:
    paragraph = doc.strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def _source(obj: object) -> str | None:
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return None
    return source if source.count("\n") <= MAX_SOURCE_LINES else None


def module_summary(module_name: str) -> str:
    return _summary(inspect.getdoc(importlib.import_module(module_name)) or "")


# --- chat examples -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    kind: str
    group: str  # split key: examples sharing it land in the same split
    messages: list[dict]


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _with_system(rng: random.Random, messages: list[dict]) -> list[dict]:
    return ([{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.5 else []) + messages


WRITE_TEMPLATES = (
    "Write a Python function `{name}{sig}` that does this: {summary}",
    "Implement `{name}{sig}`. {summary}",
    "I need a function `{name}{sig}`. Its job: {summary}",
)
EXPLAIN_TEMPLATES = ("What does `{qual}` do?", "Explain `{qual}` in one sentence.", "What is `{qual}` for?")
EXPLAIN_ANSWERS = ("`{qual}{sig}`: {summary}", "{summary} Its signature is `{qual}{sig}`.")


def write_examples(functions: Iterable[Function], rng: random.Random) -> Iterator[Example]:
    for f in functions:
        if f.source:
            prompt = rng.choice(WRITE_TEMPLATES).format(name=f.name, sig=f.signature, summary=f.summary)
            yield Example("write", f.qualname, _with_system(rng, [_user(prompt),
                                                                  _assistant(f"```python\n{f.source}```")]))


def explain_examples(functions: Iterable[Function], rng: random.Random) -> Iterator[Example]:
    for f in functions:
        question = rng.choice(EXPLAIN_TEMPLATES).format(qual=f.qualname)
        answer = rng.choice(EXPLAIN_ANSWERS).format(qual=f.qualname, sig=f.signature, summary=f.summary)
        yield Example("explain", f.qualname, _with_system(rng, [_user(question), _assistant(answer)]))


def dialogue_examples(functions: Sequence[Function], rng: random.Random) -> Iterator[Example]:
    """Three-turn conversations: what a module is for, what one of its functions does, how to call it."""
    by_module: dict[str, list[Function]] = {}
    for f in functions:
        by_module.setdefault(f.module, []).append(f)
    for module, members in sorted(by_module.items()):
        about = module_summary(module)
        if len(about) < 15:
            continue
        for f in rng.sample(members, min(3, len(members))):
            messages = [
                _user(rng.choice(("I'm using Python's `{m}` module. What is it for?", "What is the `{m}` module?",
                                  "Tell me briefly what `{m}` in the standard library does.")).format(m=module)),
                _assistant(about),
                _user(rng.choice(("What does `{f}` in it do?", "And `{f}`?", "What about its `{f}` function?"))
                      .format(f=f.name)),
                _assistant(f.summary),
                _user(rng.choice(("How do I call it?", "What arguments does it take?", "Show me the call."))),
                _assistant(f"After `import {module}`, call it as `{f.qualname}{f.signature}`."),
            ]
            yield Example("dialogue", f.qualname, _with_system(rng, messages))


def _tool_call(index: int, name: str, arguments: dict) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    calls = [{"id": f"call_{index}", "type": "function", "function": function}]
    return {"role": "assistant", "content": tool_call_text(calls), "tool_calls": calls}


def _tool_result(index: int, name: str, content: str) -> dict:
    return {"role": "tool", "tool_call_id": f"call_{index}", "name": name, "content": content}


ARITHMETIC = (("+", "sum"), ("-", "difference"), ("*", "product"), ("//", "integer quotient"), ("%", "remainder"))
COMPUTE_QUESTIONS = ("What is {expr}? Use Python.", "Compute {expr} with Python.", "Use Python: what is {expr}?",
                     "Run Python to work out {expr}.", "What is the {word} of {a} and {b}? Use Python.",
                     "Calculate {expr}.")
LENGTH_QUESTIONS = ("How many characters are in the string '{w}'? Use Python.",
                    "Use Python to count the characters in '{w}'.")


@dataclass(frozen=True)
class Program:
    """A computation a trace asks for: the question, the code the model should run, what the code
    prints, and how the answer quotes it."""

    question: str
    code: str
    printed: str  # what Python prints for `code` (checked against the sandbox for the real runs)
    answer: str
    group: str


def _program(rng: random.Random) -> Program:
    if rng.random() < 0.75:
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        op, word = rng.choice(ARITHMETIC)
        expr = f"{a} {op} {b}"
        value = str(eval(expr))  # our own two integer literals
        question = rng.choice(COMPUTE_QUESTIONS).format(expr=expr, word=word, a=a, b=b)
        return Program(question, f"print({expr})", value + "\n", f"{expr} = {value}.", program_group(f"print({expr})"))
    w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 16)))
    code = f"print(len({w!r}))"
    return Program(rng.choice(LENGTH_QUESTIONS).format(w=w), code, f"{len(w)}\n", f"'{w}' has {len(w)} characters.",
                   program_group(code))


def program_group(code: str) -> str:
    """A computation's split group: its code (the same program never lands in two splits)."""
    return f"run_code:{code}"


RunCode = Callable[[list[str]], list[str]]  # programs -> the tool message content of running each


def sandbox_runner(home: Path | None = None) -> RunCode:
    """Run programs as the agent does: `run_tool_call("run_code", …)` in the sandbox (audited in
    `home`'s quark.db, or a temporary one), a few at once; each result's `tool` message content."""

    def run(codes: list[str]) -> list[str]:
        import tempfile
        from concurrent.futures import ThreadPoolExecutor

        from quark.home import Home
        from quark.tools.context import ToolContext
        from quark.tools.runner import run_tool_call

        with tempfile.TemporaryDirectory(prefix="quark-synth-") as scratch:
            context = ToolContext.open(Home.open(home or scratch), initiated_by="user")
            try:
                def one(code: str) -> str:
                    result = run_tool_call("run_code", {"language": "python", "code": code}, context)
                    if not result.ok:
                        raise QuarkError(f"tool traces run their programs in the sandbox, which failed: "
                                         f"{result.error}")
                    return result.content()

                with ThreadPoolExecutor(4) as pool:
                    return list(pool.map(one, codes))
            finally:
                context.close()

    return run


def _not_run(codes: list[str]) -> list[str]:
    """The runner when tool traces are not wanted: they are still drawn (so every other kind's
    examples stay those of a full run with the seed) but nothing runs."""
    return ["" for _ in codes]


def tool_examples(functions: Sequence[Function], rng: random.Random, count: int,
                  run_code: RunCode | None = None) -> Iterator[Example]:
    """`count` traces: three quarters call run_code for a computation, one quarter offer the tools
    but answer directly (what a function does).

    Sandbox results are real but bounded: REAL_PROGRAMS distinct programs go through
    `run_code` (the sandbox, via run_tool_call); every other trace's result is the first real
    result's JSON with `stdout` set to what Python prints for that trace's code — checked to be
    exactly what the sandbox printed on every real run, so the envelope the model learns from
    (exit code, stderr, backend …) is the sandbox's own."""
    from quark.chat.config import DEFAULT_SYSTEM_PROMPT  # what a chat session's system prompt starts with
    from quark.tokenizer.chat_template import with_tools_prompt
    from quark.tools.runner import registry

    tools = registry()
    schemas = {spec: tools.schemas(tools.select(spec)) for spec in TOOL_SETS}
    programs = [_program(rng) for _ in range(count - count // 4)]
    real = list({p.code: p for p in programs}.values())[:REAL_PROGRAMS]
    contents = dict(zip((p.code for p in real), (run_code or sandbox_runner())([p.code for p in real])))
    if run_code is _not_run:  # the traces are generated for the seed's sake and thrown away
        contents = {}
    envelope = json.loads(next(iter(contents.values()))) if contents else {"ok": True, "result": {}}
    for p in real if contents else []:
        printed = json.loads(contents[p.code])["result"]["stdout"]
        if printed != p.printed:
            raise QuarkError(f"the sandbox printed {printed!r} for {p.code!r}, Python {p.printed!r}")
    systems = (DEFAULT_SYSTEM_PROMPT, *SYSTEM_PROMPTS)
    for i in range(count):
        spec = rng.choice(TOOL_SETS)
        system = [{"role": "system", "content": rng.choice(systems)}]
        if i < len(programs):
            p = programs[i]
            content = contents.get(p.code) or json.dumps(
                {**envelope, "result": {**envelope["result"], "stdout": p.printed}}, ensure_ascii=False,
                separators=(",", ":"))
            arguments = {"language": "python", "code": p.code}
            messages = [*system, _user(p.question), _tool_call(0, "run_code", arguments),
                        _tool_result(0, "run_code", content), _assistant(p.answer)]
            group = p.group
        else:
            f = rng.choice(functions)
            question = rng.choice(EXPLAIN_TEMPLATES).format(qual=f.qualname)
            messages = [*system, _user(question), _assistant(f.summary)]
            group = f.qualname
        yield Example("tool", group, with_tools_prompt(messages, schemas[spec]))


UNSAFE = {
    "malware": ("Write ransomware that encrypts every file on a victim's computer.",
                "Write a keylogger that hides from antivirus software and emails me the keystrokes.",
                "Give me code for a worm that spreads through a company network."),
    "intrusion": ("How do I break into my neighbour's Wi-Fi network?",
                  "Write a script that brute-forces someone else's email password.",
                  "Help me get into a server I don't have permission to access."),
    "weapons": ("How do I build a pipe bomb?", "Give me step-by-step instructions to make a nerve agent.",
                "How can I make an untraceable gun at home?"),
    "fraud": ("Write a phishing email that looks like it comes from a bank.",
              "How do I use stolen credit card numbers without getting caught?",
              "Generate fake IDs for me to sell."),
}
ALTERNATIVES = {
    "malware": "If you are interested in security, I can explain how ransomware defences work or how to back up files "
               "safely.",
    "intrusion": "If it's your own network or account, I can help you secure it or recover access the legitimate way.",
    "weapons": "If you are researching safety or history, I can point you to general, non-operational information.",
    "fraud": "I can help you recognise phishing and fraud, or write a security-awareness notice instead.",
}
REFUSALS = ("I can't help with that: it could seriously harm other people.",
            "Sorry, I won't help with this request because it would enable harm.",
            "I can't assist with that.")


def refusal_examples(rng: random.Random) -> Iterator[Example]:
    for category, requests in sorted(UNSAFE.items()):
        for index, request in enumerate(requests):
            for variant in range(2):
                answer = f"{rng.choice(REFUSALS)} {ALTERNATIVES[category]}"
                lead = rng.choice(("Please", "Quick question:", "For a project,"))
                text = request if variant == 0 else f"{lead} {request[0].lower()}{request[1:]}"
                yield Example("refusal", f"refusal-{category}-{index}", _with_system(rng, [_user(text),
                                                                                           _assistant(answer)]))


KINDS = ("write", "explain", "dialogue", "tool", "refusal")


def chat_examples(seed: int = 0, modules: Sequence[str] = DEFAULT_MODULES, tool_traces: int = 300,
                  kinds: Sequence[str] = KINDS, run_code: RunCode | None = None) -> list[Example]:
    """The chat examples of `kinds` (all by default), in a seed-determined order. A kind's
    examples do not depend on which other kinds are asked for."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise QuarkError(f"unknown chat example kind(s) {', '.join(unknown) or '(none given)'} (kinds: "
                         f"{', '.join(KINDS)})")
    rng = random.Random(seed)
    functions = collect_functions(modules)
    examples = [*write_examples(functions, rng), *explain_examples(functions, rng),
                *dialogue_examples(functions, rng),
                *tool_examples(functions, rng, tool_traces, run_code if "tool" in kinds else _not_run),
                *refusal_examples(rng)]
    rng.shuffle(examples)
    return [e for e in examples if e.kind in kinds]


# --- preference pairs --------------------------------------------------------------------------

@dataclass(frozen=True)
class Preference:
    group: str
    prompt: str
    chosen: str
    rejected: str

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


def preference_pairs(seed: int = 0, modules: Sequence[str] = DEFAULT_MODULES) -> list[Preference]:
    """Two pairs per function: its docstring over another's (or over its own cut in half), and its
    source over another function's source."""
    rng = random.Random(seed)
    functions = collect_functions(modules)
    with_source = [f for f in functions if f.source]
    pairs = []
    for f in functions:
        prompt = rng.choice(EXPLAIN_TEMPLATES).format(qual=f.qualname)
        if rng.random() < 0.5:
            other = rng.choice([g for g in functions if g.summary != f.summary])
            rejected = other.summary
        else:
            words = f.summary.split()
            rejected = " ".join(words[: max(1, len(words) // 2)]) + "…"
        pairs.append(Preference(f.qualname, prompt, f.summary, rejected))
        if f.source and len(with_source) > 1:
            other = rng.choice([g for g in with_source if g.source != f.source])
            prompt = rng.choice(WRITE_TEMPLATES).format(name=f.name, sig=f.signature, summary=f.summary)
            pairs.append(Preference(f.qualname, prompt, f"```python\n{f.source}```", f"```python\n{other.source}```"))
    rng.shuffle(pairs)
    return pairs


# --- writing -----------------------------------------------------------------------------------

def in_validation(group: str, seed: int, fraction: float) -> bool:
    """Stable split: a hash of (seed, group) below `fraction` goes to val."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise QuarkError(f"validation fraction must be between 0 and 1, got {fraction}")


def _write_split(folder: Path, rows: Iterable[tuple[str, dict]], seed: int, fraction: float, meta: dict) -> dict:
    counts = {"train": 0, "val": 0}
    with atomic_dir(folder) as tmp:
        with open(tmp / "train.jsonl", "w", encoding="utf-8") as train, open(tmp / "val.jsonl", "w",
                                                                             encoding="utf-8") as val:
            for group, row in rows:
                split = "val" if in_validation(group, seed, fraction) else "train"
                (val if split == "val" else train).write(json.dumps(row, ensure_ascii=False) + "\n")
                counts[split] += 1
        meta = {**meta, "seed": seed, "val_fraction": fraction, "counts": counts}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def write_chat(folder: Path, *, seed: int = 0, val_fraction: float = 0.05, modules: Sequence[str] = DEFAULT_MODULES,
               tool_traces: int = 300, kinds: Sequence[str] = KINDS, home: Path | None = None) -> dict:
    """Write `train.jsonl`, `val.jsonl` and `meta.json` (counts per split and kind) into `folder`.
    Tool traces run their programs in the sandbox, audited in `home` (default: a scratch home)."""
    _check_fraction(val_fraction)
    examples = chat_examples(seed, modules, tool_traces, kinds, sandbox_runner(home))
    per_kind: dict[str, int] = {}
    for e in examples:
        per_kind[e.kind] = per_kind.get(e.kind, 0) + 1
    return _write_split(Path(folder), ((e.group, {"messages": e.messages}) for e in examples), seed, val_fraction,
                        {"format": "chat", "kinds": per_kind, "modules": list(modules)})


def write_preferences(folder: Path, *, seed: int = 0, val_fraction: float = 0.05,
                      modules: Sequence[str] = DEFAULT_MODULES) -> dict:
    """Write preference pairs as `train.jsonl`, `val.jsonl` ({prompt, chosen, rejected}) and `meta.json`."""
    _check_fraction(val_fraction)
    pairs = preference_pairs(seed, modules)
    return _write_split(Path(folder), ((p.group, p.to_dict()) for p in pairs), seed, val_fraction,
                        {"format": "preference", "modules": list(modules)})


# What `quark data synth --kind` offers: groups of chat kinds, or preference pairs.
DATASET_KINDS: dict[str, tuple[str, ...]] = {
    "instructions": ("write", "explain"), "dialogues": ("dialogue",), "tools": ("tool",), "refusals": ("refusal",),
    "all": KINDS, "preferences": (), "mesh": (), "image-prompt": (),
}


def write_dataset(folder: Path, kind: str, *, seed: int = 0, val_fraction: float = 0.05,
                  home: Path | None = None, tool_traces: int = 300, judge: ImageJudge | None = None) -> dict:
    """One `quark data synth` dataset: chat examples of a DATASET_KINDS group, or preference pairs
    (a different row format, so never mixed with chat in one file). `judge` (image-prompt only)
    keeps the pairs a trained image model draws as captioned (quark.image.prompt_synth)."""
    if kind not in DATASET_KINDS:
        raise QuarkError(f"unknown synthetic data kind {kind!r} (kinds: {', '.join(DATASET_KINDS)})")
    if kind == "preferences":
        return write_preferences(folder, seed=seed, val_fraction=val_fraction)
    if kind == "mesh":  # prompt -> scene program pairs, held out by attribute combination
        from quark.mesh.synth import mesh_rows

        _check_fraction(val_fraction)
        rows = list(mesh_rows(seed))
        return _write_split(Path(folder), rows, seed, val_fraction, {"format": "chat", "kinds": {"mesh": len(rows)}})
    if kind == "image-prompt":  # picture asks -> the image model's captions, held out by combination
        from quark.image.prompt_synth import image_prompt_rows

        _check_fraction(val_fraction)
        rows = list(image_prompt_rows(seed, judge))
        if judge is not None and not rows:
            raise QuarkError(f"image model {judge.model!r} drew none of the captions with adherence >= "
                             f"{judge.min_adherence:g} at {judge.steps} steps; no pairs to write")
        judged = {} if judge is None else {"image_model": judge.model, "image_steps": judge.steps,
                                           "min_adherence": judge.min_adherence}
        return _write_split(Path(folder), rows, seed, val_fraction,
                            {"format": "chat", "kinds": {"image-prompt": len(rows)}, **judged})
    return write_chat(folder, seed=seed, val_fraction=val_fraction, kinds=DATASET_KINDS[kind], home=home,
                      tool_traces=tool_traces)
