"""`quark data stats`: what the catalog knows about one dataset, or a line per dataset."""

from __future__ import annotations

from typing import Any

from quark.data import catalog
from quark.home import Home


def dataset_stats(home: Home, name: str, by_language: bool = False) -> dict[str, Any]:
    """What the catalog knows of `name`; with `by_language`, its documents, characters and share of
    characters per language (the buckets `quark data filter --lang` splits out)."""
    entry = catalog.require(home, name)
    blocks, docs_with_blocks = catalog.code_block_totals(home, name)
    extra: dict[str, Any] = {}
    if by_language:
        buckets = catalog.language_totals(home, name)
        extra["by_language"] = {language: {**bucket, "share": round(bucket["chars"] / max(1, entry["chars"]), 4)}
                                for language, bucket in buckets.items()}
    return {
        "dataset": name,
        "kind": entry["kind"],
        "docs": entry["docs"],
        "chars": entry["chars"],
        "shards": entry["shards"],
        "sources": entry["sources"],
        "languages": catalog.counts(home, name, "language"),
        "licenses": catalog.counts(home, name, "license"),
        "code_blocks": blocks,
        "docs_with_code_blocks": docs_with_blocks,
        "dropped": catalog.drops(home, name),
        "path": str(home.dataset_dir(name)),
        **extra,
    }


def all_stats(home: Home) -> dict[str, Any]:
    return {"datasets": [{key: entry[key] for key in ("name", "kind", "docs", "chars", "shards")}
                         | {"dropped": sum(catalog.drops(home, entry["name"]).values())}
                         for entry in catalog.datasets(home)]}
