"""`quark finetune sft|dpo|reward|ppo|embed|rerank|distill|router`: align a model (full, or a LoRA/QLoRA
adapter) with the pretraining loop; PPO against a reward model; distil a student from a teacher; train the
turn router."""

from typing import Annotated, Any, Optional

import typer

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import device_option, model_option

finetune = group("finetune",
                 "Align a model: SFT on chat JSONL, DPO on preference pairs, reward models, PPO against a reward "
                 "model, embedding models and rerankers; full or LoRA/QLoRA.")

Name = Annotated[str, typer.Option("--name",
                                   help="Run name; the result is models/NAME (or models/MODEL/adapters/NAME with "
                                        "--lora).")]
Model = Annotated[Optional[str], model_option("Base model under models/ (not needed with --resume).")]
Recipe = Annotated[Optional[str], typer.Option("--recipe",
                                               help="Shipped recipe (sft, dpo, reward, ppo-tiny, …) or a YAML "
                                                    "file \\[default: the command's].")]
Val = Annotated[Optional[str], typer.Option("--val",
                                            help="Held-out JSONL file \\[default: val.jsonl beside train.jsonl].")]
Resume = Annotated[bool, typer.Option("--resume",
                                      help="Continue runs/NAME from its last checkpoint, with its own recipe.")]
Set = Annotated[Optional[list[str]], typer.Option("--set",
                                                  help="Override a recipe value: section.key=value (repeatable).")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Same as --set train.max_steps=N.")]
SaveEvery = Annotated[Optional[int], typer.Option("--save-every", min=0,
                                                  help="Same as --set train.save_every=N (0: only the last step is "
                                                       "saved).")]
EvalEvery = Annotated[Optional[int], typer.Option("--eval-every", min=0,
                                                  help="Same as --set train.eval_every=N (0: no validation).")]
Seed = Annotated[Optional[int], typer.Option("--seed", min=0, help="Same as --set train.seed=N.")]
Device = Annotated[Optional[str], device_option("Same as --set train.device=auto|cpu|cuda[:N].")]
Loggers = Annotated[Optional[list[str]], typer.Option(
    "--logger", help="Also log to csv, tensorboard or wandb (offline), beside metrics.jsonl; repeatable.")]
Lora = Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (peft) instead of every weight.")]
QLora = Annotated[bool, typer.Option("--qlora", help="LoRA on a 4-bit NF4 base (bitsandbytes; CUDA only).")]
Rank = Annotated[Optional[int], typer.Option("--rank", min=1, help="Same as --set lora.rank=N.")]
Alpha = Annotated[Optional[int], typer.Option("--alpha", min=1, help="Same as --set lora.alpha=N.")]
Targets = Annotated[Optional[str], typer.Option("--targets", help="Same as --set lora.targets=q_proj,v_proj,...")]


def _overrides(set_: list[str] | None, **flags: Any) -> list[str]:
    """--set items plus the shorthand flags, as section.key=value strings."""
    keys = {"max_steps": "train.max_steps", "save_every": "train.save_every", "eval_every": "train.eval_every",
            "seed": "train.seed", "device": "train.device", "lora": "lora.enabled", "qlora": "lora.qlora",
            "rank": "lora.rank", "alpha": "lora.alpha", "targets": "lora.targets", "beta": "dpo.beta",
            "logger": "train.loggers"}
    flags["logger"] = ",".join(flags.get("logger") or []) or None
    given = [f"{keys[k]}={v}" for k, v in flags.items() if v is not None and v is not False]
    return [*(set_ or []), *given]


def _report(cli: Cli, summary: dict | None, scores: tuple[str, ...]) -> dict | None:
    if summary is None:  # a process other than rank 0 of a torchrun job
        return None
    figures = [f"{summary['steps']} steps", f"train loss {summary['train_loss']:.4f}"]
    figures += [f"{key.replace('_', ' ')} {summary[key]:.3f}" for key in ("val_loss",
                                                                          *scores) if summary.get(key) is not None]
    cli.print(f"[bold]{summary['run']}[/]: {', '.join(figures)} → {summary['output']}")
    return summary


@quark_command(finetune, "sft")
def sft(cli: Cli, name: Name, model: Model = None,
        data: Annotated[Optional[str], typer.Option("--data",
                                                    help="Chat JSONL file, a folder with train.jsonl [+ val.jsonl], or "
                                                         "a dataset under data/.")] = None,
        val: Val = None, recipe: Recipe = None, lora: Lora = False, qlora: QLora = False, rank: Rank = None,
        alpha: Alpha = None, targets: Targets = None, resume: Resume = False, set_: Set = None,
        max_steps: MaxSteps = None, save_every: SaveEvery = None, eval_every: EvalEvery = None, seed: Seed = None,
        device: Device = None, logger: Loggers = None) -> Optional[dict]:
    """Supervised fine-tuning on chat JSONL (OpenAI `messages`), loss on assistant tokens only.

    Conversations are packed into windows of train.seq_len; checkpoints,
    --resume and torchrun work as in pretraining. Each evaluation reports
    the held-out loss and the fraction of held-out prompts whose greedy
    reply ends its turn with <|end|>. The model is models/NAME; with --lora
    an adapter in PEFT layout under models/MODEL/adapters/NAME (load it with
    Engine.load(folder, adapter=NAME), or fold it in with quark models merge).

    Example:

        quark data synth --kind all --name chat

        quark finetune sft --model tiny --data chat --name tiny-sft --max-steps 300

        quark finetune sft --model tiny --data chat --name tiny-chat --lora --rank 8 --alpha 16 --targets q_proj,v_proj

        quark finetune sft --name tiny-sft --resume              # after a crash or Ctrl-C
    """
    from quark.align.sft import sft as run

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device, lora=lora or None, qlora=qlora or None, rank=rank, alpha=alpha,
                           targets=targets, logger=logger)
    summary = run(cli.home, name=name, base=model, data=data, val=val, recipe=recipe, overrides=overrides,
                  resume=resume, progress=cli.progress_enabled(), log=cli.print)
    return _report(cli, summary, ("val_end_rate",))


Pairs = Annotated[Optional[str], typer.Option("--data",
                                              help="Preference JSONL (prompt, chosen, rejected), a folder with "
                                                   "train.jsonl [+ val.jsonl], or a dataset under data/.")]


@quark_command(finetune, "dpo")
def dpo(cli: Cli, name: Name, model: Model = None, data: Pairs = None, val: Val = None, recipe: Recipe = None,
        beta: Annotated[Optional[float], typer.Option("--beta", min=0.0,
                                                      help="Same as --set dpo.beta=X: how far the policy may move from "
                                                           "the reference.")] = None,
        lora: Lora = False, qlora: QLora = False, rank: Rank = None, alpha: Alpha = None, targets: Targets = None,
        resume: Resume = False, set_: Set = None, max_steps: MaxSteps = None, save_every: SaveEvery = None,
        eval_every: EvalEvery = None, seed: Seed = None, device: Device = None,
        logger: Loggers = None,
        from_feedback: Annotated[bool, typer.Option("--from-feedback",
                                                    help="Train on the preference pairs of this home's chat "
                                                         "feedback (see quark chat feedback export) instead of "
                                                         "--data; they are written to runs/NAME/feedback-pairs.jsonl."
                                                    )] = False) -> Optional[dict]:
    """Direct preference optimisation: prefer `chosen` over `rejected`, relative to the starting model.

    Loss per pair: -log σ(β·((log π(c) − log π(r)) − (log ref(c) − log ref(r))))
    with the reference log-probabilities computed once, by the frozen model
    as it starts. Each evaluation reports the held-out preference margin
    (above 0: the policy moved towards the chosen replies) and the fraction
    of held-out pairs it ranks right.

    Example:

        quark data synth --kind preferences --name prefs

        quark finetune dpo --model tiny-sft --data prefs --name tiny-dpo --beta 0.1

        quark finetune dpo --model tiny-sft --from-feedback --name tiny-fb   # the ratings given in quark chat
    """
    from quark.align.dpo import dpo as run

    if from_feedback:
        data = _feedback_pairs(cli, name, model, data, resume)

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device, lora=lora or None, qlora=qlora or None, rank=rank, alpha=alpha,
                           targets=targets, beta=beta, logger=logger)
    summary = run(cli.home, name=name, base=model, data=data, val=val, recipe=recipe, overrides=overrides,
                  resume=resume, progress=cli.progress_enabled(), log=cli.print)
    return _report(cli, summary, ("val_margin", "val_pair_accuracy"))


def _feedback_pairs(cli: Cli, name: str, model: Optional[str], data: Optional[str], resume: bool) -> str:
    """--from-feedback: the home's chat feedback as the run's pairs file, in the run's folder (so
    run.json records it and --resume trains on the same pairs)."""
    from quark.chat.feedback import write_pairs
    from quark.db import connect
    from quark.errors import QuarkError

    if data:
        raise QuarkError("--from-feedback and --data both say what to train on: give one of them")
    if resume:
        raise QuarkError("--resume trains on the pairs the run started with (in its run.json): drop --from-feedback")
    if not model:
        raise QuarkError("--from-feedback needs --model: the model to align with the feedback")
    run_dir = cli.home.run_dir(name)
    if (run_dir / "run.json").exists():
        raise QuarkError(f"run {name!r} already exists ({run_dir}): add --resume to continue it, or pick another "
                         "--name")
    conn = connect(cli.home.db_path)
    try:
        done = write_pairs(conn, run_dir / "feedback-pairs.jsonl")
    finally:
        conn.close()
    cli.print(f"{done['pairs']} preference pairs from chat feedback → {done['path']}")
    return done["path"]


@quark_command(finetune, "reward")
def reward(cli: Cli, name: Name, model: Model = None, data: Pairs = None, val: Val = None, recipe: Recipe = None,
           resume: Resume = False, set_: Set = None, max_steps: MaxSteps = None, save_every: SaveEvery = None,
           eval_every: EvalEvery = None, seed: Seed = None, device: Device = None,
           logger: Loggers = None) -> Optional[dict]:
    """Train a reward model: a scalar head on the last token's hidden state, Bradley–Terry loss.

    The result is models/NAME (the fine-tuned network) with its head in
    reward_head.safetensors; RewardScorer.load(folder).score(prompts, replies)
    (quark.align.reward) scores replies. Each evaluation reports the fraction
    of held-out pairs whose chosen reply scores higher.

    Example:

        quark data synth --kind preferences --name prefs

        quark finetune reward --model tiny --data prefs --name tiny-rm --max-steps 200
    """
    from quark.align.reward import reward as run

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device, logger=logger)
    summary = run(cli.home, name=name, base=model, data=data, val=val, recipe=recipe, overrides=overrides,
                  resume=resume, progress=cli.progress_enabled(), log=cli.print)
    return _report(cli, summary, ("val_pair_accuracy",))


TextPairs = Annotated[Optional[str], typer.Option(
    "--data", help="Pairs JSONL (query, positive[, negatives]), a folder with train.jsonl [+ val.jsonl], or a "
                   "dataset under data/.")]
Builtin = Annotated[Optional[str], typer.Option(
    "--builtin", help="Built-in pairs instead of --data: stdlib (docstring↔source, signature↔docstring, doc "
                      "heading↔section from a core of 45 modules, 20% held out, and for training the rest of the "
                      "standard library's functions and methods) or stdlib-core (the core alone).")]


@quark_command(finetune, "embed")
def embed(cli: Cli, name: Name, model: Model = None, data: TextPairs = None, builtin: Builtin = None, val: Val = None,
          recipe: Recipe = None,
          dim: Annotated[Optional[int], typer.Option(
              "--dim", help="Same as --set embed.dim=N: the embedding width (default: the model's).")] = None,
          temperature: Annotated[Optional[float], typer.Option(
              "--temperature", help="Same as --set embed.temperature=X (the start when learned).")] = None,
          resume: Resume = False, set_: Set = None, max_steps: MaxSteps = None, save_every: SaveEvery = None,
          eval_every: EvalEvery = None, seed: Seed = None, device: Device = None) -> Optional[dict]:
    """Train Quark's own embedding model: a contrastive head on a Quark base.

    Mean-pooled hidden states through a projection, unit norm; InfoNCE
    both ways over in-batch negatives and BM25-mined hard negatives, with a
    learned temperature. Every weight of the base trains. The result is
    models/NAME with embedding_head.safetensors; memory, `quark index` and
    /v1/embeddings use the head whenever the model has one. Each evaluation
    reports held-out recall@10 and MRR (every held-out query ranks every
    held-out passage).

    Example:

        quark finetune embed --model tiny --builtin stdlib --name tiny-embed --max-steps 200

        quark finetune embed --model tiny --data pairs.jsonl --name my-embed --dim 64
    """
    from quark.retrieval.contrastive import embed as run

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device)
    overrides += [f"embed.{k}={v}" for k, v in (("dim", dim), ("temperature", temperature)) if v is not None]
    summary = run(cli.home, name=name, base=model, data=data, builtin=builtin, val=val, recipe=recipe,
                  overrides=overrides, resume=resume, progress=cli.progress_enabled(), log=cli.print)
    return _report(cli, summary, ("val_recall_at_10", "val_mrr"))


@quark_command(finetune, "rerank")
def rerank(cli: Cli, name: Name, model: Model = None, data: TextPairs = None, builtin: Builtin = None, val: Val = None,
           recipe: Recipe = None, resume: Resume = False, set_: Set = None, max_steps: MaxSteps = None,
           save_every: SaveEvery = None, eval_every: EvalEvery = None, seed: Seed = None,
           device: Device = None) -> Optional[dict]:
    """Train the reranker (grounding head) that reorders retrieved passages.

    A scalar head on the last token of (question, passage); per question the
    supported passage is scored against a BM25-mined hard negative and its
    corrupted twin (an entity, number or identifier the question names,
    swapped), listwise softmax loss. Same pairs data as `finetune embed`.
    Each evaluation reports how often the supported passage beats its
    corrupted twin (val_twin_accuracy; the gate is 0.8) and the hard
    negative. Use it with `quark index search --reranker NAME`.

    Example:

        quark finetune rerank --model tiny --builtin stdlib --name tiny-rerank --max-steps 200
    """
    from quark.retrieval.reranker import rerank as run

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device)
    summary = run(cli.home, name=name, base=model, data=data, builtin=builtin, val=val, recipe=recipe,
                  overrides=overrides, resume=resume, progress=cli.progress_enabled(), log=cli.print)
    return _report(cli, summary, ("val_twin_accuracy", "val_negative_accuracy"))


@quark_command(finetune, "distill")
def distill(cli: Cli, name: Name,
            student: Annotated[Optional[str], typer.Option("--student", help="The small model to train (not needed "
                                                           "with --resume).")] = None,
            teacher: Annotated[Optional[str], typer.Option("--teacher", help="The big model whose logits the student "
                                                           "learns; same tokenizer as the student.")] = None,
            data: Annotated[Optional[str], typer.Option("--data", help="Token set under tokens/ (its val split is "
                                                        "the held-out data).")] = None,
            alpha: Annotated[Optional[float], typer.Option("--alpha", help="Same as --set distill.alpha=A: weight of "
                                                           "the usual next-token loss (0: KL only; 1: no teacher).")
                             ] = None,
            temperature: Annotated[Optional[float], typer.Option("--temperature", help="Same as --set "
                                                                 "distill.temperature=T.")] = None,
            recipe: Recipe = None, resume: Resume = False, set_: Set = None, max_steps: MaxSteps = None,
            save_every: SaveEvery = None, eval_every: EvalEvery = None, seed: Seed = None, device: Device = None,
            logger: Loggers = None) -> Optional[dict]:
    """Distil a student from a teacher: KL to the teacher's temperature-scaled logits (×T²) on a
    token set, optionally mixed with the usual next-token loss by --alpha.

    Teacher and student must share a tokenizer. Each evaluation reports the
    student's held-out next-token loss (val ce) and its KL to the teacher
    (val kl); the summary adds the teacher's own held-out loss. The result
    is models/NAME; checkpoints and --resume work as in pretraining.

    Example:

        quark finetune distill --teacher tiny-big --student tiny --data code --name tiny-distilled

        quark finetune distill --teacher tiny-big --student tiny --data code --name tiny-mix --alpha 0.5 --temperature 2
    """
    from quark.align.distill import distill as run

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device, logger=logger)
    overrides += [f"distill.{key}={value}" for key, value in (("alpha", alpha), ("temperature", temperature))
                  if value is not None]
    summary = run(cli.home, name=name, base=student, teacher=teacher, data=data, recipe=recipe, overrides=overrides,
                  resume=resume, progress=cli.progress_enabled(), log=cli.print)
    return _report(cli, summary, ("val_ce", "val_kl", "teacher_val_ce"))


@quark_command(finetune, "ppo")
def ppo(cli: Cli, name: Name,
        policy: Annotated[Optional[str], typer.Option("--policy", help="The model to improve, e.g. an SFT model "
                                                      "(not needed with --resume); also the frozen reference.")] = None,
        reward: Annotated[Optional[str], typer.Option("--reward", help="The reward model that scores the replies "
                                                      "(quark finetune reward; same tokenizer as the policy).")] = None,
        data: Annotated[Optional[str], typer.Option("--data", help="Prompts: JSONL of {\"prompt\": ...} rows "
                                                    "(preference files qualify) or chat {\"messages\": ...} rows "
                                                    "(asked up to the first assistant turn), a folder with "
                                                    "train.jsonl [+ val.jsonl], or a dataset under data/.")] = None,
        val: Annotated[Optional[str], typer.Option("--val", help="Held-out prompts, scored at each evaluation "
                                                   "\\[default: val.jsonl beside train.jsonl].")] = None,
        recipe: Recipe = None,
        kl_coef: Annotated[Optional[float], typer.Option("--kl-coef", min=0.0, help="Same as --set ppo.kl_coef=X: "
                                                         "the per-token KL penalty towards the reference.")] = None,
        lora: Lora = False, rank: Rank = None, alpha: Alpha = None, targets: Targets = None,
        resume: Resume = False, set_: Set = None, max_steps: MaxSteps = None, save_every: SaveEvery = None,
        eval_every: EvalEvery = None, seed: Seed = None, device: Device = None,
        logger: Loggers = None) -> Optional[dict]:
    """PPO against a reward model: sample replies to prompts, score them, and push the policy
    towards higher scores while a KL penalty holds it near where it started.

    Each rollout batch (ppo.rollout_prompts prompts) is sampled by Quark's
    inference engine and scored by --reward; per-token rewards are the KL
    penalty to the frozen reference (the policy as it starts) plus the
    score on the last token; GAE over a value head gives the advantages;
    ppo.epochs passes of clipped policy + value losses follow, one optimizer
    step per minibatch (train.micro_batch × grad_accum replies). The bar
    and metrics.jsonl show reward, KL, clip fraction, value loss and
    entropy; each evaluation samples the held-out prompts (val.jsonl) and
    reports their mean reward (val reward) and KL to the reference (val
    kl). The result is models/NAME with value_head.safetensors (with
    --lora, models/POLICY/adapters/NAME); --resume continues exactly.

    Example:

        quark data synth --kind preferences --name prefs

        quark finetune reward --model tiny-sft --data prefs --name tiny-rm

        quark finetune ppo --policy tiny-sft --reward tiny-rm --data prefs --name tiny-ppo --kl-coef 0.05

        quark finetune ppo --name tiny-ppo --resume              # after a crash or Ctrl-C
    """
    from quark.align.ppo import ppo as run

    overrides = _overrides(set_, max_steps=max_steps, save_every=save_every, eval_every=eval_every, seed=seed,
                           device=device, lora=lora or None, rank=rank, alpha=alpha, targets=targets, logger=logger)
    if kl_coef is not None:
        overrides.append(f"ppo.kl_coef={kl_coef}")
    summary = run(cli.home, name=name, base=policy, reward=reward, data=data, val=val, recipe=recipe,
                  overrides=overrides, resume=resume, progress=cli.progress_enabled(), log=cli.print)
    if summary is not None and summary.get("val_reward") is not None:
        cli.print(f"held-out reward {summary['start_val_reward']:.3f} → {summary['val_reward']:.3f}, "
                  f"KL to the reference {summary['val_kl']:.3f} nats per reply")
    return _report(cli, summary, ("val_reward", "val_kl"))


@quark_command(finetune, "router")
def router(cli: Cli, name: Name, model: Annotated[str, model_option("Base model whose embeddings the router reads.")],
           data: Annotated[Optional[str], typer.Option("--data", help="Extra labelled JSONL turns: {\"text\": ..., "
                                                       "\"label\": general|code|image|mesh|needs-retrieval}.")] = None,
           threshold: Annotated[float, typer.Option("--threshold",
                                                    help="Below this top probability the turn goes to general.")] = 0.4,
           per_label: Annotated[int, typer.Option("--per-label", min=5, help="Synthetic turns per label.")] = 120,
           seed: Annotated[int, typer.Option("--seed", min=0, max=2 ** 32 - 1,
                                             help="Seed of the synthetic turns and the head.")] = 0) -> dict:
    """Train the turn router: a small MLP head over the model's embeddings that picks general, code,
    image, mesh or needs-retrieval, falling back to general below --threshold.

    Trains on synthetic turns from local templates plus --data; reports
    accuracy and macro-F1 on held-out turns from templates it never saw.
    The result is models/NAME (router.safetensors + router.json); try it
    with quark route.

    Example:

        quark finetune router --model tiny --name tiny-router

        quark finetune router --model tiny --name tiny-router --data my_turns.jsonl --threshold 0.5

        quark route "write a python function that sorts a list" --model tiny-router
    """
    from quark.agent.router_train import train_router

    summary = train_router(cli.home, name=name, base=model, data=data, threshold=threshold, per_label=per_label,
                           seed=seed)
    held = summary["figures"]["held_out"]
    cli.print(f"[bold]{name}[/]: held-out accuracy {held['accuracy']:.3f}, macro-F1 {held['macro_f1']:.3f} "
              f"({held['turns']} turns) → {summary['output']}")
    return summary


def register(root: typer.Typer) -> None:
    root.add_typer(finetune)
