"""`quark demo`: the whole pipeline on the built-in corpus, as the chain of commands a user would type.

Each stage is an ordinary `quark` command run in this process, so the demo exercises exactly the
code paths a user's shell script does, and its printout doubles as a tutorial.
"""

from __future__ import annotations

import shutil
import time
from typing import Annotated, Optional

import typer
from rich.panel import Panel
from rich.table import Table

from quark.commands._cli import Cli, quark_command
from quark.errors import QuarkError

MARKER = ".quark-demo"  # marks a home the demo made, so --force only ever clears its own
TOOL_QUESTION = "What is 37 * 41? Use Python."  # only a tool answers it well: the tiny model cannot multiply


def stages(fast: bool, steps: int | None) -> list[tuple[str, list[str]]]:
    """(title, argv) for every stage. `fast` shrinks each stage to seconds (used by the tests)."""
    pretrain_steps = str(steps or (40 if fast else 600))
    sft_steps = str(20 if fast else 300)
    limit = ["--limit", "40"] if fast else []
    return [
        ("ingest the standard library", ["data", "ingest", "--builtin", "stdlib", *limit]),
        ("blend code and text", ["data", "mix", "--ratio", "stdlib-code=0.8", "--ratio", "stdlib-text=0.2",
                                 "--name", "demo"]),
        ("train the tokenizer", ["tokenize", "train", "--data", "demo", "--vocab-size", "2048" if fast else "4096",
                                 "--name", "demo"]),
        ("encode the blend", ["tokenize", "encode", "--tokenizer", "demo", "--data", "demo", "--name", "demo",
                              "--val-fraction", "0.05"]),
        # A 512-token context (trained on 128-token windows, as before): the closing tool turn's system
        # prompt, tool call, sandbox result and answer take ~270 tokens, more than the preset's 256.
        ("pretrain the tiny model", ["pretrain", "--recipe", "tiny-cpu", "--data", "demo", "--name", "demo-base",
                                     "--max-steps", pretrain_steps, "--set", "model.max_seq_len=512",
                                     *(["--eval-every", "20", "--save-every", "20"] if fast else [])]),
        ("make synthetic chat data", ["data", "synth", "--kind", "all", "--name", "demo-chat"]),
        # 384-token windows, so the tool traces (~230-350 tokens) are trained on, not left out.
        ("supervised fine-tuning", ["finetune", "sft", "--model", "demo-base", "--data", "demo-chat", "--name", "demo",
                                    "--max-steps", sft_steps, "--set", "train.seq_len=384"]),
        ("perplexity", ["eval", "perplexity", "--model", "demo", "--data", "demo", "--max-tokens",
                        "4096" if fast else "65536"]),
        ("HumanEval slice", ["eval", "humaneval", "--model", "demo", "--limit", "4" if fast else "20",
                             "--max-new-tokens", "48" if fast else "128"]),
        ("document QA", ["eval", "docqa", "--model", "demo", "--builtin", "stdlib", "--limit", "4" if fast else "20",
                         "--max-new-tokens", "32" if fast else "64"]),
        ("one chat turn", ["chat", "--model", "demo", "--message", "What does `shlex.quote` do?", "--max-tokens", "48",
                           "--temperature", "0"]),
        ("build, simplify and render a mesh", ["mesh", "build", "--example", "mug", "--faces", "800"]),
        # A short look at the image model (40 of `image-tiny`'s 2,500 steps): the pretrained LM is its text encoder.
        ("train the image model", ["image", "train", "--builtin", "shapes", "--recipe", "image-tiny",
                                   "--text-encoder", "demo-base", "--name", "demo-image",
                                   "--max-steps", "4" if fast else "40", "--set", "data.images=512",
                                   "--set", "data.heldout_images=16", "--set", "train.eval_every=0"]),
        ("draw an image", ["image", "generate", "a large red circle in the center on a white background",
                           "--model", "demo-image", "--seed", "0", "--steps", "10"]),
        # The model chooses (tool_choice auto) to call run_code, the sandbox answers, the reply quotes it.
        ("a chat turn that calls a tool", ["chat", "--model", "demo", "--tools", "run_code", "--message", TOOL_QUESTION,
                                           "--max-tokens", "64", "--temperature", "0"]),
    ]


def register(root: typer.Typer) -> None:
    quark_command(root, "demo")(demo)


def demo(cli: Cli,
         force: Annotated[bool, typer.Option("--force", help="Redo the demo in a home an earlier demo made.")] = False,
         fast: Annotated[bool, typer.Option("--fast",
                                            help="Seconds per stage instead of minutes (smoke test).")] = False,
         steps: Annotated[Optional[int], typer.Option("--steps", min=1,
                                                      help="Pretraining steps [default: the tiny-cpu "
                                                           "recipe's 600].")] = None,
         ) -> dict:
    """Run the whole pipeline on the built-in corpus: data → tokenizer → pretrain → SFT → eval → chat → image.

    Uses a home of its own (pass --home; `make demo` uses ./.quark-demo). Minutes on a laptop CPU.

    Example: quark demo --home /tmp/quark-demo
    """
    from quark.commands import app

    home = cli.home.root
    _prepare(home, force)
    timings: list[dict] = []
    for number, (title, argv) in enumerate(stages(fast, steps), 1):
        cli.print(Panel(f"[bold]{number}. {title}[/]\n[dim]$ quark {' '.join(argv)}[/]", expand=False))
        start = time.perf_counter()
        code = app([*argv, "--home", str(home), *(["--debug"] if cli.debug else [])], standalone_mode=False)
        seconds = time.perf_counter() - start
        if code not in (None, 0):
            raise QuarkError(f"demo stage {number} ({title}) failed with exit code {code}: $ quark {' '.join(argv)}")
        timings.append({"stage": title, "command": "quark " + " ".join(argv), "seconds": round(seconds, 1)})
    card = home / "models" / "demo" / "card.md"
    table = Table(title="quark demo", show_lines=False)
    for column in ("stage", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for row in timings:
        table.add_row(row["stage"], f"{row['seconds']:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(r['seconds'] for r in timings):.1f}")
    cli.print(table)
    cli.print(f"home: {home}\nchat model: {home / 'models' / 'demo'}\nmodel card: {card}\n"
              f"try: quark chat --home {home} --model demo")
    return {"home": str(home), "model": str(home / "models" / "demo"), "card": str(card), "stages": timings,
            "seconds": round(sum(r["seconds"] for r in timings), 1)}


def _prepare(home, force: bool) -> None:
    """Refuse to mix the demo into a home with other work; clear an earlier demo's only with --force."""
    contents = [p for p in home.iterdir() if p.name != MARKER]
    if contents and not (home / MARKER).exists():
        raise QuarkError(f"{home} already holds other work; give the demo an empty folder with --home")
    if contents and not force:
        raise QuarkError(f"{home} holds an earlier demo; pass --force to redo it")
    for path in contents:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (home / MARKER).write_text("made by quark demo\n")
