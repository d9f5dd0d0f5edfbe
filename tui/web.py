"""`quark chat --web`: the same chat TUI in a browser, through textual-serve.

textual-serve runs one `quark chat` process per browser tab (Textual's web driver) and relays its
screen and keys over a websocket. The rule for who may connect is `quark serve`'s: loopback only,
unless the home has a serve key (`quark serve keys create NAME`); whenever the home requires a key
(quark.serving.keys) or the bind is public, every request needs one — `?key=KEY` on the first page
load (then kept in an HttpOnly cookie, which the page's websocket carries) or `Authorization:
Bearer KEY`.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from textual_serve.server import Server

from quark.errors import QuarkError
from quark.serving.keys import KeyStore
from quark.serving.server import bind, is_loopback, url_of

KEY_COOKIE = "quark_chat_key"


class WebChat(Server):
    """textual-serve's server on a socket we bound (so --port 0 works and the URL is known before
    it runs), with the serve-key check in front of every route when `keys` is given."""

    def __init__(self, command: str, sock: socket.socket, keys: KeyStore | None) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(command, host=host, port=port, title="quark chat", public_url=url_of(sock))
        self.sock, self.keys = sock, keys

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        if self.keys is not None:
            app.middlewares.append(self._require_key)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """Quiet: the command prints the URL (textual-serve would print its logo)."""

    @web.middleware  # new-style: called as (request, handler)
    async def _require_key(self, request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        given = request.query.get("key") or bearer or request.cookies.get(KEY_COOKIE, "")
        if not given or self.keys is None or self.keys.lookup(given) is None:
            raise web.HTTPUnauthorized(text="quark chat --web needs a serve key: open the page as /?key=KEY "
                                            "(create one with quark serve keys create NAME)\n")
        response = await handler(request)
        if request.query.get("key") and not response.prepared:
            response.set_cookie(KEY_COOKIE, given, httponly=True, samesite="Strict")
        return response

    def serve(self, debug: bool = False) -> None:
        """Run until Ctrl-C / SIGTERM (aiohttp's own signal handling)."""
        self.debug = debug
        web.run_app(self._make_app(), sock=self.sock, print=None)


def open_web_chat(command: str, db_path: Path, host: str, port: int) -> tuple[WebChat, bool]:
    """Bind `host:port` under `quark serve`'s rule and return the server and whether it needs a key.
    `command` is what each browser tab runs (a `quark chat` that opens the TUI)."""
    keys = KeyStore(db_path)
    public = not is_loopback(host)
    if public and not keys.active_count():
        keys.close()
        raise QuarkError(f"refusing to serve the chat on {host} without a serve key: create one with "
                         "`quark serve keys create NAME` (or bind 127.0.0.1)")
    required = public or keys.required()
    if not required:
        keys.close()
    return WebChat(command, bind(host, port), keys if required else None), required
