"""Data curation: turn files, JSONL, Parquet and git checkouts into clean Parquet datasets.

    sources    what to read (folder walking, git ls-files, skip rules, input checks)
    readers    datatrove readers: whole files, strict JSONL, Parquet rows, pydoc topics, staged shards
    steps      Quark's datatrove blocks: normalise, language, licence policy, PII scrub, annotate
    licenses / pii / language   the rules those blocks apply
    dedup      exact (sha256) index and filter, MinHash configuration and word tokenizer
    pipeline   the six datatrove stages of an ingest
    ingest     plan -> stages -> publish
    catalog    corpus.duckdb and the atomic publish of datasets
    shards     the common row schema and shard I/O
    mix / remove / export / stats   the other `quark data` commands
"""
