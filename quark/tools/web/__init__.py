"""The web layer under `web_search` and `fetch_url`: the SSRF guard (`addresses`), the pinned,
redirect-checking HTTP client (`client`), robots.txt (`robots`), the SQLite page cache (`cache`),
HTML to text (`text`) and the search providers (`search`)."""
