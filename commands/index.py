"""`quark index add|list|stats|search|remove`: document indexes for grounded answers."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import model_option
from quark.errors import QuarkError

index = group("index", "Document indexes for grounded answers: chunk, embed and search files, cite them in chat.")
IndexName = Annotated[str, typer.Argument(help="Index name (letters, digits, '.', '_', '-').")]


@contextlib.contextmanager
def _index(cli: Cli) -> Iterator:
    from quark.retrieval.documents import DocumentIndex

    docs = DocumentIndex(cli.home)
    try:
        yield docs
    finally:
        docs.close()


@quark_command(index, "add")
def add(cli: Cli, name: IndexName,
        paths: Annotated[Optional[list[Path]], typer.Argument(
            help="Files and folders to add (folders are walked).")] = None,
        dataset: Annotated[Optional[str], typer.Option(
            "--dataset", help="Also add every document of this dataset under data/.")] = None,
        model: Annotated[Optional[str], model_option("Embedding model (models/NAME, ideally from `quark finetune "
                                                     "embed`); without one the index is BM25 only. Changing it "
                                                     "re-embeds every chunk.")] = None) -> dict:
    """Add files, folders or a dataset to index NAME (created on first use).

    Files are chunked where their meaning splits (Python and other code at
    definitions, Markdown/reST at headings, text at paragraphs); each chunk
    keeps its source path and line span. Re-adding a file whose content is
    unchanged does nothing; a changed file has its own chunks replaced.
    Binary or non-UTF-8 files are named and skipped. Above 20,000 chunks an
    approximate (HNSW) vector index is built beside quark.db, with its
    recall against the exact scan recorded.

    Example:

        quark index add docs README.md docs/ src/ --model tiny-embed

        quark data ingest --builtin --name stdlib && quark index add stdlib --dataset stdlib --model tiny-embed
    """
    if not paths and not dataset and model is None:
        raise QuarkError("nothing to add: give files or folders, --dataset NAME, or --model to re-embed")
    with _index(cli) as docs:
        with cli.err.status("indexing…") if cli.progress_enabled() else contextlib.nullcontext():
            report = docs.add(name, paths or [], dataset=dataset, model=model)
    for skipped in report.skipped:
        cli.err.print(f"[yellow]skipped[/] {skipped['path']}: {skipped['reason']}")
    cli.print(f"[bold]{name}[/]: {len(report.added)} added, {len(report.replaced)} replaced, "
              f"{report.unchanged} unchanged, "
              f"{len(report.skipped)} skipped; {report.chunks_written} chunks written, {report.chunks_removed} removed "
              f"({report.seconds:.1f} s)")
    return report.as_dict()


@quark_command(index, "list")
def list_(cli: Cli) -> dict:
    """List the document indexes.

    Example: quark index list --json
    """
    with _index(cli) as docs:
        rows = docs.listing()
    table = Table("name", "model", "sources", "chunks")
    for row in rows:
        table.add_row(row["name"], row["model"] or "(BM25 only)", str(row["sources"]), str(row["chunks"]))
    cli.print(table if rows else "no indexes yet: quark index add NAME PATH")
    return {"indexes": rows}


@quark_command(index, "stats")
def stats(cli: Cli, name: IndexName,
          sources: Annotated[bool, typer.Option("--sources",
                                                help="Also list every source with its chunk count.")] = False) -> dict:
    """Sizes of an index: sources, chunks by kind, embedding model, vector search mode.

    Example: quark index stats docs --sources
    """
    with _index(cli) as docs:
        result = docs.stats(name)
        if sources:
            result["source_list"] = docs.sources(name)
    approx = result["approximate"]
    cli.print(f"[bold]{name}[/]: {result['sources']} sources, {result['chunks']} chunks "
              f"({', '.join(f'{k} {v}' for k, v in sorted(result['kinds'].items()))}); "
              f"model {result['model'] or 'none'}; "
              f"vector search {result['vector_search']}"
              + (f" (recall@10 {approx['recall_at_10']:.3f} against exact)" if approx else ""))
    for row in result.get("source_list", []):
        cli.print(f"  {row['path']}  {row['chunks']} chunks")
    return result


@quark_command(index, "search")
def search(cli: Cli, name: IndexName, query: Annotated[str, typer.Argument(help="What to look for.")],
           k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many chunks to return.")] = 5,
           reranker: Annotated[Optional[str], typer.Option("--reranker", help="Re-score the top candidates with this "
                                                           "reranker (models/NAME from `quark finetune "
                                                           "rerank`).")] = None,
           exact: Annotated[bool, typer.Option("--exact", help="Use the exact vector scan even when an approximate "
                                                          "index exists.")] = False) -> dict:
    """Hybrid search (BM25 + cosine, fused by reciprocal rank), then the reranker.

    Example:

        quark index search docs "how are checkpoints written?" --k 3 --reranker tiny-rerank --json
    """
    with _index(cli) as docs:
        hits = docs.search(name, query, k=k, reranker=reranker, exact=exact)
    for n, hit in enumerate(hits, 1):
        title = f" · {hit.chunk.title}" if hit.chunk.title else ""
        cli.print(f"[bold][{n}][/] {hit.chunk.ref}{title}  [dim]score {hit.score:.4f}[/]")
        cli.print("    " + " ".join(hit.chunk.text.split())[:160])
    if not hits:
        cli.print("no matches")
    return {"index": name, "query": query, "hits": [h.as_dict() for h in hits]}


@quark_command(index, "remove")
def remove(cli: Cli, name: IndexName,
           source: Annotated[Optional[str], typer.Option("--source", help="Remove only this source (a path as added) "
                                                         "and its chunks.")] = None) -> dict:
    """Remove a whole index, or one source and its chunks.

    Example:

        quark index remove docs --source docs/old.md

        quark index remove docs
    """
    with _index(cli) as docs:
        result = docs.remove(name, source=source)
    cli.print(f"removed {result['removed']} from {name} ({result['chunks_removed']} chunks)")
    return result


def register(root: typer.Typer) -> None:
    root.add_typer(index)
