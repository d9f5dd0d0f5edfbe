"""`quark serve`: an OpenAI-compatible HTTP API over the inference engine (FastAPI + uvicorn)."""

from quark.serving.app import create_app
from quark.serving.keys import KeyStore, parse_rate_limit, read_key_file
from quark.serving.server import BackgroundServer, bind, is_loopback, run, url_of

__all__ = ["BackgroundServer", "KeyStore", "bind", "create_app", "is_loopback", "parse_rate_limit", "read_key_file",
           "run", "url_of"]
