"""`quark data …`: curate corpora into Parquet datasets (ingest, stats, mix, remove, export)."""


from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from quark.commands._cli import Cli, group, quark_command
from quark.commands._executor_options import executor_options
from quark.data.executors import ExecutorOptions
from quark.progress import progress_bar

data = group("data", "Curate corpora: ingest, dedup, filter, stats, mix, remove, export (Parquet datasets + DuckDB "
                     "catalog).")


class Format(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


class Builtin(str, Enum):
    stdlib = "stdlib"


class DedupMethod(str, Enum):
    minhash = "minhash"
    simhash = "simhash"
    exact = "exact"
    none = "none"


class UnknownLicence(str, Enum):
    auto = "auto"
    keep = "keep"
    drop = "drop"


@quark_command(data, "ingest")
@executor_options
def ingest(
    cli: Cli,
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files and folders: text, source, JSONL, Parquet, git "
                                                               "checkouts.")] = None,
    name: Annotated[Optional[str], typer.Option("--name",
                                                help="Dataset name (default: the first path's name).")] = None,
    builtin: Annotated[Optional[Builtin], typer.Option("--builtin",
                                                       help="Ingest the built-in corpus instead: stdlib-code + "
                                                            "stdlib-text.")] = None,
    text_field: Annotated[str, typer.Option("--text-field",
                                            help="JSONL field / Parquet column holding the text.")] = "text",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1,
                                                 help="Read at most N files per folder (and N doc topics), spread "
                                                      "evenly: a quick trial.")] = None,
    unknown_licence: Annotated[UnknownLicence, typer.Option("--unknown-licence", "--unknown-license",
                                                            help="Documents with no licence found: keep, drop, or auto "
                                                                 "(drop inside a copyleft folder or repository, keep "
                                                                 "elsewhere).")] = UnknownLicence.auto,
    dedup: Annotated[DedupMethod, typer.Option("--dedup",
                                               help="Near-duplicate method after exact (sha256) dedup: minhash, "
                                                    "simhash, exact (exact only) or none (run "
                                                    "quark data dedup later).")] = DedupMethod.minhash,
    *,
    executor: ExecutorOptions,
) -> dict[str, Any]:
    """Clean, deduplicate and catalog documents as data/<name>/train/shard-*.parquet.

    A datatrove pipeline: normalise whitespace (never indentation), count
    fenced code blocks, detect the language, drop GPL/LGPL/AGPL sources
    (an SPDX tag or notice anywhere in a file; a file with no licence of
    its own inherits its folder's or repository's; --unknown-licence
    says what happens when none is found), scrub emails, phones, IPs and keys (<EMAIL>, <SECRET>, ...), drop exact
    (sha256) and near (MinHash) duplicates. It runs on all local cores, or
    on a Ray or Slurm cluster; --workers is also how many shards the corpus
    is split into.

    --builtin stdlib reads this Python's standard library (about 600
    modules, 11 MB; tests and generated files left out; ~40 s on 2 cores)
    and its documentation topics.

    Examples:

      quark data ingest --builtin stdlib --limit 100

      quark data ingest ~/src/myrepo notes.md dump.jsonl --name mine --workers 4

      RAY_ADDRESS=auto quark data ingest /shared/corpus --executor ray
    """
    from quark.data.ingest import ingest as run_ingest
    from quark.data.pipeline import stage_count

    datasets = 2 if builtin else 1
    with progress_bar(enabled=cli.progress_enabled()) as progress:
        task = progress.add_task("ingest", total=datasets * stage_count(dedup.value), unit="stage")
        result = run_ingest(cli.home, paths or [], name=name, builtin=builtin.value if builtin else None,
                            text_field=text_field, limit=limit, options=executor,
                            unknown_license=unknown_licence.value, dedup=dedup.value,
                            on_stage=lambda dataset, stage: progress.update(task, advance=1,
                                                                            description=f"{dataset}: {stage}"))
    for summary in result["datasets"]:
        cli.print(_ingest_table(summary))
    cli.print(f"[dim]{result['executor']} executor, {result['workers']} workers, {result['seconds']} s[/]")
    return result


def _ingest_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['dataset']}  ({summary['path']})", title_justify="left")
    table.add_column("documents")
    table.add_column("count", justify="right")
    table.add_row("[bold green]kept", f"{summary['docs']:,}")
    for reason, count in summary["dropped"].items():
        table.add_row(f"[yellow]dropped: {reason}", f"{count:,}")
    for kind, count in summary["scrubbed"].items():
        table.add_row(f"[cyan]scrubbed: <{kind}>", f"{count:,}")
    table.add_row("characters kept", f"{summary['chars']:,}")
    table.add_row("languages", ", ".join(f"{lang} {n}" for lang, n in summary["languages"].items()) or "-")
    table.add_row("licences", ", ".join(f"{spdx} {n}" for spdx, n in summary["licenses"].items()) or "-")
    return table


def _refine_table(result: dict[str, Any], what: str) -> Table:
    table = Table(title=f"{result['dataset']} ({what} of {result['input']}, {result['path']})", title_justify="left")
    table.add_column("documents")
    table.add_column("count", justify="right")
    table.add_row("input", f"{result['input_docs']:,}")
    table.add_row("[bold green]kept", f"{result['docs']:,}")
    for reason, count in result["dropped"].items():
        table.add_row(f"[yellow]dropped: {reason}", f"{count:,}")
    table.add_row("characters kept", f"{result['chars']:,}")
    return table


@quark_command(data, "dedup")
@executor_options
def dedup(
    cli: Cli,
    dataset: Annotated[str, typer.Argument(help="The dataset to deduplicate.")],
    method: Annotated[DedupMethod, typer.Option("--method",
                                                help="minhash (Jaccard of word 5-grams), simhash (64-bit fingerprints, "
                                                     "banded lookup) or exact (sha256 only); exact duplicates always "
                                                     "go first.")] = DedupMethod.minhash,
    threshold: Annotated[Optional[float], typer.Option("--threshold",
                                                       help="Similarity in (0.5, 1] above which two documents are near "
                                                            "duplicates: the Jaccard LSH threshold for minhash "
                                                            "(default ~0.72), the share of agreeing fingerprint bits "
                                                            "for simhash (default 0.906, 6 of 64 bits).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Output dataset \\[default: DATASET-dedup].")] = None,
    *,
    executor: ExecutorOptions,
) -> dict[str, Any]:
    """Remove exact and near duplicates from an existing dataset, as a new dataset.

    The same datatrove stages as ingest, on any executor; the result's
    manifest.json records the input shards' sha256, the method and what
    was dropped.

    Examples:

      quark data ingest ~/src --name src --dedup none

      quark data dedup src --method simhash --name src-simhash

      quark data dedup src --method minhash --threshold 0.8
    """
    from quark.data.pipeline import stage_count
    from quark.data.refine import dedup as run_dedup

    if method == DedupMethod.none:
        from quark.errors import QuarkError
        raise QuarkError("--method none removes nothing: choose minhash, simhash or exact")
    with progress_bar(enabled=cli.progress_enabled()) as progress:
        task = progress.add_task("dedup", total=stage_count(method.value), unit="stage")
        result = run_dedup(cli.home, dataset, method=method.value, threshold=threshold, name=name, options=executor,
                           on_stage=lambda stage: progress.update(task, advance=1, description=f"dedup: {stage}"))
    cli.print(_refine_table(result, f"{method.value} dedup"))
    return result


@quark_command(data, "filter")
@executor_options
def filter_(
    cli: Cli,
    dataset: Annotated[str, typer.Argument(help="The dataset to filter.")],
    min_chars: Annotated[Optional[int], typer.Option("--min-chars", help="Drop documents shorter than this.")] = None,
    max_chars: Annotated[Optional[int], typer.Option("--max-chars", help="Drop documents longer than this.")] = None,
    lang: Annotated[Optional[list[str]], typer.Option("--lang",
                                                      help="Keep only this language (python, en, ...); repeat for "
                                                           "several.")] = None,
    licence_deny: Annotated[Optional[list[str]], typer.Option("--licence-deny", "--license-deny",
                                                              help="Drop documents whose licence matches this SPDX "
                                                                   "glob (GPL-*, unknown); repeat for "
                                                                   "several.")] = None,
    toxicity: Annotated[Optional[float], typer.Option("--toxicity",
                                                      help="Drop documents whose toxicity score (0-1, from the shipped "
                                                           "weighted word list) is at or above this; 0.5 drops one "
                                                           "threat or hateful phrase, or two insults.")] = None,
    profanity: Annotated[bool, typer.Option("--profanity",
                                            help="Also drop every document with a profanity term.")] = False,
    toxicity_terms: Annotated[Optional[Path], typer.Option("--toxicity-terms",
                                                           help="Your own word list (TERM<TAB>CATEGORY<TAB>WEIGHT, "
                                                                "like quark/data/toxicity_terms.tsv).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Output dataset \\[default: DATASET-filtered].")] = None,
    *,
    executor: ExecutorOptions,
) -> dict[str, Any]:
    """Keep the documents of a dataset that pass every filter, as a new dataset.

    Each dropped document is counted under its reason (too_short,
    too_long, language, license_denied, toxic_insult, toxic_threat,
    toxic_hate, toxic_profanity, profanity); manifest.json records the
    input shards, the filters, the threshold and the counts. The toxicity
    scorer is a local weighted word list (no model download): see
    quark/data/toxicity_terms.tsv for its terms and how they add up.

    Examples:

      quark data filter stdlib-text --min-chars 200 --lang en --name text-en

      quark data filter src --licence-deny unknown --licence-deny 'MPL-*'

      quark data filter forum --toxicity 0.5 --profanity --name forum-clean
    """
    from quark.data.filters import FilterSpec
    from quark.data.refine import filter_dataset

    spec = FilterSpec(min_chars=min_chars, max_chars=max_chars, languages=tuple(lang or ()),
                      license_deny=tuple(licence_deny or ()), toxicity=toxicity, profanity=profanity,
                      toxicity_terms=str(toxicity_terms.resolve()) if toxicity_terms else None)
    with progress_bar(enabled=cli.progress_enabled()) as progress:
        task = progress.add_task("filter", total=1, unit="stage")
        result = filter_dataset(cli.home, dataset, spec, name=name, options=executor,
                                on_stage=lambda stage: progress.update(task, advance=1))
    cli.print(_refine_table(result, "filter"))
    return result


@quark_command(data, "stats")
def stats(
    cli: Cli,
    dataset: Annotated[Optional[str], typer.Argument(help="A dataset name; all datasets when left out.")] = None,
    by_language: Annotated[bool, typer.Option("--by-language",
                                              help="Documents, characters and share of characters per "
                                                   "language.")] = False,
) -> dict[str, Any]:
    """Documents, characters, languages, licences and drop reasons from the catalog.

    Examples:

      quark data stats

      quark data stats stdlib-code --json

      quark data stats blend --by-language
    """
    from quark.data.stats import all_stats, dataset_stats
    from quark.errors import QuarkError

    if by_language and dataset is None:
        raise QuarkError("--by-language needs a DATASET")
    if dataset is None:
        result = all_stats(cli.home)
        table = Table("dataset", "kind", "docs", "chars", "shards", "dropped")
        for entry in result["datasets"]:
            table.add_row(entry["name"], entry["kind"], f"{entry['docs']:,}", f"{entry['chars']:,}",
                          str(entry["shards"]), f"{entry['dropped']:,}")
        cli.print(table if result["datasets"] else "no datasets yet: try quark data ingest --builtin stdlib")
        return result
    result = dataset_stats(cli.home, dataset, by_language=by_language)
    if by_language:
        buckets = Table("language", "docs", "chars", "share", title=f"{dataset} by language", title_justify="left")
        for language, bucket in result["by_language"].items():
            buckets.add_row(language, f"{bucket['docs']:,}", f"{bucket['chars']:,}", f"{bucket['share']:.1%}")
        cli.print(buckets)
        return result
    table = Table(title=f"{dataset} ({result['kind']})", title_justify="left", show_header=False)
    table.add_row("documents", f"{result['docs']:,}")
    table.add_row("characters", f"{result['chars']:,}")
    table.add_row("shards", str(result["shards"]))
    table.add_row("code blocks", f"{result['code_blocks']:,} in {result['docs_with_code_blocks']:,} documents")
    for label, key in (("languages", "languages"), ("licences", "licenses"), ("dropped", "dropped")):
        table.add_row(label, ", ".join(f"{k} {v:,}" for k, v in result[key].items()) or "-")
    table.add_row("built from", ", ".join(result["sources"]))
    cli.print(table)
    return result


@quark_command(data, "mix")
def mix(
    cli: Cli,
    ratio: Annotated[Optional[list[str]], typer.Option("--ratio",
                                                       help="DATASET=SHARE of characters; repeat per dataset (shares "
                                                            "are normalised).")] = None,
    language_weight: Annotated[Optional[list[str]], typer.Option("--language-weight",
                                                                 help="LANGUAGE=WEIGHT inside every input: a "
                                                                      "language's share of an input's characters is "
                                                                      "its characters times WEIGHT, normalised "
                                                                      "(unnamed languages weigh 1; 0 leaves one out); "
                                                                      "repeat per language.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the blend (a dataset folder).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for document order and sampling.")] = 0,
    chars: Annotated[Optional[int], typer.Option("--chars", min=1,
                                                 help="Character budget (default: the largest blend that repeats no "
                                                      "document).")] = None,
    from_manifest: Annotated[Optional[Path], typer.Option("--from-manifest",
                                                          help="Rebuild the blend a manifest.json describes (inputs "
                                                               "must be unchanged).")] = None,
) -> dict[str, Any]:
    """Blend datasets by share of characters into data/<name>/train.

    manifest.json records every input shard's sha256, the sources, counts,
    ratios and seed; --from-manifest rebuilds the identical blend (and
    refuses if an input changed since). --language-weight reweights the
    languages inside each input (`en=2` doubles English's share against
    the input's other languages; `fr=0` leaves French out).

    Examples:

      quark data mix --ratio stdlib-code=0.7 --ratio stdlib-text=0.3 --name blend

      quark data mix --ratio web=1 --language-weight en=0.8 --language-weight de=0.2 --name web-en

      quark data mix --from-manifest ~/.quark/data/blend/manifest.json
    """
    from quark.data.mix import BlendSpec, parse_language_weights, parse_ratios, rebuild
    from quark.data.mix import mix as run_mix
    from quark.errors import QuarkError

    if from_manifest is not None:
        if ratio or chars is not None or language_weight:
            raise QuarkError("--from-manifest takes its ratios and budget from the manifest: "
                             "drop --ratio/--chars/--language-weight")
        manifest = rebuild(cli.home, from_manifest, name)
    else:
        if not name:
            raise QuarkError("give the blend a --name")
        manifest = run_mix(cli.home, BlendSpec(name=name, ratios=parse_ratios(ratio or []), seed=seed, chars=chars,
                                               language_weights=parse_language_weights(language_weight or [])))
    table = Table("input", "share", "docs taken", "chars taken", "passes",
                  title=f"blend {manifest['name']}: {manifest['output']['docs']:,} docs, "
                        f"{manifest['output']['chars']:,} chars", title_justify="left")
    for entry in manifest["inputs"]:
        table.add_row(entry["dataset"], f"{manifest['ratios'][entry['dataset']]:.3f}", f"{entry['docs_taken']:,}",
                      f"{entry['chars_taken']:,}", str(entry["epochs"]))
    cli.print(table)
    if "identical" in manifest:
        cli.print("rebuilt: " + ("[green]identical to the manifest's shards" if manifest["identical"]
                                 else "[yellow]shards differ from the manifest's"))
    return manifest


@quark_command(data, "remove")
def remove(
    cli: Cli,
    source: Annotated[str, typer.Option("--source", help="Glob over sources ('*/secret/*') or a path/URL prefix.")],
) -> dict[str, Any]:
    """Take a source down: drop its documents everywhere, rebuild blends.

    Every dataset loses the matching documents and every blend built from a
    changed dataset is rebuilt from its manifest, all in one atomic step.

    Examples:

      quark data remove --source '/home/me/src/leaky-repo/*'

      quark data remove --source pydoc_data.topics:assert
    """
    from quark.data.remove import remove_source

    result = remove_source(cli.home, source)
    for dataset, count in result["removed"].items():
        cli.print(f"{dataset}: removed {count:,} documents")
    for blend in result["rebuilt_blends"]:
        cli.print(f"{blend}: rebuilt from its manifest")
    return result


@quark_command(data, "export")
def export(
    cli: Cli,
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.jsonl,
) -> dict[str, Any]:
    """Write a dataset's documents (all columns) to one JSONL or Parquet file.

    Examples:

      quark data export stdlib-code --format jsonl -o stdlib-code.jsonl
    """
    from quark.data.export import export_dataset

    result = export_dataset(cli.home, dataset, fmt.value, output)
    cli.print(f"wrote {result['docs']:,} documents to {result['path']}")
    return result


class SynthKind(str, Enum):
    instructions = "instructions"
    dialogues = "dialogues"
    tools = "tools"
    refusals = "refusals"
    preferences = "preferences"
    grounded = "grounded"
    mesh = "mesh"
    code = "code"
    image_prompt = "image-prompt"
    all = "all"


@quark_command(data, "synth")
def synth(
    cli: Cli,
    name: Annotated[str, typer.Option("--name",
                                      help="Dataset name: writes data/NAME/train.jsonl, val.jsonl, meta.json.")],
    kind: Annotated[SynthKind, typer.Option("--kind",
                                            help="instructions, dialogues, tools, refusals (chat JSONL), all (every "
                                                 "chat kind), preferences (prompt/chosen/rejected), grounded "
                                                 "(numbered sources, cited answers, and preferences/ against "
                                                 "made-up references), mesh (prompt → scene program), "
                                                 "code (coding tasks with tests: solutions, run_code traces, "
                                                 "self-debugging traces), or image-prompt (picture asks → the "
                                                 "captions the image model draws)."
                                            )] = SynthKind.all,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, same data (on a given Python version).")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.9,
                                                help="Share held out in val.jsonl, split by function/template so none "
                                                     "leaks.")] = 0.05,
    image_model: Annotated[str | None, typer.Option("--image-model",
                                                    help="image-prompt only: draw each caption with this trained "
                                                         "image model, store its per-attribute adherence on the row "
                                                         "and keep only the pairs whose image passes.")] = None,
    image_steps: Annotated[int | None, typer.Option("--image-steps",
                                                    help="DDIM steps per drawing (--image-model; default 8).")] = None,
    min_adherence: Annotated[float | None, typer.Option("--min-adherence",
                                                        help="Share of the caption's colour, shape, size and position "
                                                             "the image must show to keep the pair (--image-model; "
                                                             "default 1, all of them).")] = None,
) -> dict[str, Any]:
    """Write built-in synthetic alignment data from this Python's standard library.

    Chat examples (OpenAI `messages`): instructions from signatures and
    docstrings (write a function, explain one), templated multi-turn
    dialogues, tool-use traces with real results, refusals of unsafe
    requests. Preferences: (prompt, chosen, rejected) pairs for DPO and
    reward models. Grounded: retrieval-augmented prompts (numbered stdlib
    chunks with their paths and lines) whose answers cite [n], plus
    preferences/ whose rejected answer cites a URL, version or identifier
    no source contains. `quark finetune ... --data NAME` reads them.

    Examples:

      quark data synth --kind all --name chat

      quark data synth --kind preferences --name prefs --seed 1

      quark data synth --kind mesh --name mesh   (3D prompts → scene programs)

      quark data synth --kind code --name code --val-fraction 0.25   (coding tasks, graded by quark eval code-tasks)

      quark data synth --kind image-prompt --name image-prompt --val-fraction 0.2   (asks → image captions)

      quark data synth --kind image-prompt --name ip --image-model img   (kept only if img draws the caption)

      quark finetune sft --model tiny --data chat --name tiny-sft

      quark data synth --kind grounded --name rag && quark finetune sft --model tiny --data rag --name tiny-rag
    """
    from quark.data.synth import write_dataset
    from quark.errors import QuarkError

    folder = cli.home.dataset_dir(name)
    if folder.exists():
        raise QuarkError(f"dataset {name!r} already exists ({folder}); pick another --name")
    judge = None
    if image_model is None and (image_steps is not None or min_adherence is not None):
        raise QuarkError("--image-steps and --min-adherence set how --image-model scores pairs: "
                         "give --image-model NAME")
    if image_model is not None:
        if kind is not SynthKind.image_prompt:
            raise QuarkError(f"--image-model scores image-prompt pairs; --kind {kind.value} has no captions")
        from quark.image.generate import ImageModel
        from quark.image.prompt_synth import ImageJudge

        scoring = {"steps": image_steps, "min_adherence": min_adherence}
        judge = ImageJudge.for_model(ImageModel(cli.home, image_model),
                                     **{k: v for k, v in scoring.items() if v is not None})
    if kind is SynthKind.grounded:
        from quark.retrieval.grounded import write_grounded

        meta = write_grounded(folder, seed=seed, val_fraction=val_fraction)
    elif kind is SynthKind.code:
        from quark.data.code_tasks import write_code

        meta = write_code(folder, seed=seed, val_fraction=val_fraction, home=cli.home.root)
    else:
        meta = write_dataset(folder, kind.value, seed=seed, val_fraction=val_fraction, home=cli.home.root, judge=judge)
    counts = meta["counts"]
    cli.print(f"wrote {counts['train']:,} train / {counts['val']:,} val {kind.value} examples to {folder}")
    return {"name": name, "kind": kind.value, "path": str(folder), **meta}


def register(root: typer.Typer) -> None:
    root.add_typer(data)
