"""`quark data stats`: what the catalog knows about one dataset, or a line per dataset."""

from __future__ import annotations

from typing import Any

from quark.data import catalog
from quark.home import Home


def dataset_stats(home: Home, name: str) -> dict[str, Any]:
    entry = catalog.require(home, name)
    blocks, docs_with_blocks = catalog.code_block_totals(home, name)
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
    }


def all_stats(home: Home) -> dict[str, Any]:
    return {"datasets": [{key: entry[key] for key in ("name", "kind", "docs", "chars", "shards")}
                         | {"dropped": sum(catalog.drops(home, entry["name"]).values())}
                         for entry in catalog.datasets(home)]}
