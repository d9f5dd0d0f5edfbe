"""`quark chat --web` in a real browser: Debian's headless Chromium (/usr/bin/chromium) driven by
Playwright. The page is xterm.js drawing on a canvas, so the test reads the screen from what the
server sends over the page's websocket (the app's terminal output, escape sequences stripped)."""

from __future__ import annotations

import json
import os
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from chat_fixtures import chat_home  # noqa: F401  (fixture)
from quark.home import Home
from test_tui import _config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# CSI, OSC, DCS and two-character escapes: what is left is the text the app drew.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|P[^\x1b]*\x1b\\|[@-Z\\-_])")
MESSAGE = "hello from the browser"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


def _start_web_chat(home: Home, *options: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "quark", "chat", "--web", "--port", "0", "--home", str(home.root),
                             "--json", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        info = json.loads(lines.get(timeout=90))
    except (queue.Empty, ValueError):
        proc.kill()
        raise AssertionError(f"quark chat --web did not start: {proc.communicate()[1][-2000:]}") from None
    return proc, info["url"]


def _last_reply(home: Home) -> str | None:
    conn = sqlite3.connect(home.db_path)
    try:
        row = conn.execute("SELECT content FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_quark_chat_web_needs_a_serve_key_once_the_home_has_one(chat_home: Home, quark) -> None:  # noqa: F811
    """`quark serve`'s rule: a public bind without a key is refused; with a key every request needs it."""
    refused = quark("chat", "--web", "--host", "0.0.0.0", "--port", "0", expect=1).output
    assert "without a serve key" in refused
    key = quark.json("serve", "keys", "create", "browser")["key"]
    proc, url = _start_web_chat(chat_home)
    try:
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        page = httpx.get(url, params={"key": key})
        assert page.status_code == 200 and "textual-terminal" in page.text
        assert httpx.get(f"{url}/static/css/xterm.css", cookies=page.cookies).status_code == 200
    finally:
        _stop(proc)


@needs_chromium
@pytest.mark.slow  # a browser and a model load on a shared CPU: about 2 minutes
def test_quark_chat_web_streams_a_reply_into_a_browser(chat_home: Home, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    _config(chat_home, max_tokens=12)
    proc, url = _start_web_chat(chat_home)
    frames: list[bytes] = []

    def screen() -> str:
        return ANSI.sub("", b"".join(frames).decode("utf-8", "replace"))

    def wait_for(what: str, done, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                page.screenshot(path=tmp_path / "failed.png")
                raise AssertionError(f"timed out waiting for {what}; screenshot {tmp_path / 'failed.png'}; "
                                     f"screen text ends: {screen()[-800:]!r}")
            page.wait_for_timeout(200)  # lets Playwright deliver websocket frames

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda payload: frames.append(payload) if isinstance(payload, bytes) else None))
            page.goto(url)
            wait_for("the chat screen with the model loaded", lambda: "· ready" in screen())
            page.focus(".xterm-helper-textarea")  # xterm.js's key input; a click would move the app's focus
            page.keyboard.type(MESSAGE)
            wait_for("the typed message", lambda: MESSAGE in screen())
            page.keyboard.press("Enter")
            wait_for("the stored reply", lambda: _last_reply(chat_home) is not None, seconds=180)
            reply = _last_reply(chat_home)
            words = sorted(re.findall(r"\w{2,}", reply), key=len, reverse=True)
            assert words, f"the tiny model's reply has no word to look for: {reply!r}"
            wait_for(f"the streamed reply {reply!r} on the page", lambda: words[0] in screen())
            shot = tmp_path / "chat-web.png"
            page.screenshot(path=shot)
            print(f"screenshot: {shot}")
            browser.close()
    finally:
        _stop(proc)
    assert shot.stat().st_size > 0
