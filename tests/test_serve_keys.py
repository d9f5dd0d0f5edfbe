"""API keys: created and revoked through the CLI, stored hashed, enforced over HTTP, rate-limited."""

import hashlib
import shutil
from pathlib import Path

import httpx
import openai
import pytest

from conftest import Quark
from quark import db
from quark.inference import Engine
from quark.serving import BackgroundServer, KeyStore, create_app

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture
def keyed_home(tiny_model_home: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(tiny_model_home, home)
    return home


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def test_keys_are_required_once_created_hashed_rate_limited_and_revocable(keyed_home: Path, tmp_path: Path) -> None:
    quark = Quark(keyed_home)
    open_key = quark.json("serve", "keys", "create", "ci")["key"]
    limited = quark.json("serve", "keys", "create", "trial", "--rate-limit", "2/min")
    assert limited["rate_limit_per_min"] == 2
    listed = quark.json("serve", "keys", "list")["keys"]
    assert [k["name"] for k in listed] == ["ci", "trial"] and open_key not in str(listed)
    conn = db.connect(keyed_home / "quark.db")
    stored = [row["key_hash"] for row in conn.execute("SELECT key_hash FROM api_keys ORDER BY id")]
    conn.close()
    assert stored[0] == hashlib.sha256(open_key.encode()).hexdigest()
    assert open_key.encode() not in (keyed_home / "quark.db").read_bytes()
    assert "already exists" in quark("serve", "keys", "create", "ci", expect=1).output

    file_key = "from-a-file-0123456789"
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# deploy keys\n{file_key}\n")
    store = KeyStore(keyed_home / "quark.db", [file_key])
    app = create_app(Engine.load(keyed_home / "models" / "tiny"), keys=store)
    with BackgroundServer(app) as server:
        no_key = httpx.get(f"{server.url}/v1/models")
        assert no_key.status_code == 401 and "Authorization: Bearer" in no_key.json()["error"]["message"]
        with pytest.raises(openai.AuthenticationError) as wrong:
            _client(server.url, "qk-not-a-real-key").models.list()
        assert wrong.value.code == "invalid_api_key"
        assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key
        assert _client(server.url, open_key).models.list().data[0].id == "tiny"
        assert _client(server.url, file_key).chat.completions.create(model="tiny", messages=CHAT, max_tokens=2).choices

        trial = _client(server.url, limited["key"])
        for _ in range(2):
            trial.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as limit:
            trial.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2)
        assert limit.value.code == "rate_limit_exceeded" and int(limit.value.response.headers["retry-after"]) >= 1
        assert _client(server.url, open_key).models.list().data  # other keys are not slowed down

        quark("serve", "keys", "revoke", "ci")
        with pytest.raises(openai.AuthenticationError):  # the running server sees the revocation at once
            _client(server.url, open_key).models.list()


def test_refuses_a_public_address_without_keys_and_bad_key_input(keyed_home: Path, tmp_path: Path) -> None:
    quark = Quark(keyed_home)
    refused = quark("serve", "--model", "tiny", "--host", "0.0.0.0", "--port", "0", expect=1)
    assert "refusing to serve on 0.0.0.0 without an API key" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert "no keys in it" in quark("serve", "--model", "tiny", "--api-key-file", str(empty), expect=1).output
    assert "--rate-limit" in quark("serve", "keys", "create", "x", "--rate-limit", "fast", expect=1).output
    assert "no API key named" in quark("serve", "keys", "revoke", "ghost", expect=1).output
    assert "unknown model" in quark("serve", "--model", "ghost", expect=1).output


def test_auth_stays_on_after_the_last_key_is_revoked_until_turned_off(keyed_home: Path) -> None:
    quark = Quark(keyed_home)
    key = quark.json("serve", "keys", "create", "only")["key"]
    app = create_app(Engine.load(keyed_home / "models" / "tiny"), keys=KeyStore(keyed_home / "quark.db"))
    with BackgroundServer(app) as server:
        assert _client(server.url, key).models.list().data
        quark("serve", "keys", "revoke", "only")
        keyless = httpx.get(f"{server.url}/v1/models")  # every key revoked: still closed
        assert keyless.status_code == 401 and keyless.json()["error"]["code"] == "invalid_api_key"
        assert quark.json("serve", "keys", "list")["auth"] is True
        quark("serve", "keys", "auth", "off")  # only an explicit choice opens it
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
        second = quark.json("serve", "keys", "create", "again")["key"]  # a new key turns auth back on
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        assert "revoke them first" in quark("serve", "keys", "auth", "off", expect=1).output
        assert _client(server.url, second).models.list().data


def test_a_public_server_never_ends_up_open(keyed_home: Path) -> None:
    """`quark serve --host 0.0.0.0` builds its app with require_key: with no key left at all (and
    auth turned off), a keyless request is still refused."""
    quark = Quark(keyed_home)
    quark("serve", "keys", "auth", "off")
    app = create_app(Engine.load(keyed_home / "models" / "tiny"), keys=KeyStore(keyed_home / "quark.db"),
                     require_key=True)
    with BackgroundServer(app) as server:
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer qk-guess"}).status_code == 401


def test_tokens_per_minute_limit_counts_generated_tokens(keyed_home: Path) -> None:
    quark = Quark(keyed_home)
    created = quark.json("serve", "keys", "create", "tpm", "--token-limit", "6/min")
    assert created["token_limit_per_min"] == 6 and created["rate_limit_per_min"] is None
    app = create_app(Engine.load(keyed_home / "models" / "tiny"), keys=KeyStore(keyed_home / "quark.db"))
    with BackgroundServer(app) as server:
        client = _client(server.url, created["key"])
        spent = 0
        while spent < 6:  # requests are let in while the key's minute holds fewer than 6 generated tokens
            answer = client.completions.create(model="tiny", prompt="def", max_tokens=4, temperature=1.0, seed=spent)
            spent += answer.usage.completion_tokens
            assert answer.usage.completion_tokens >= 1
        with pytest.raises(openai.RateLimitError) as limit:
            client.completions.create(model="tiny", prompt="def", max_tokens=1)
        assert "6 tokens per minute" in limit.value.message and limit.value.body["type"] == "tokens"
        assert int(limit.value.response.headers["retry-after"]) >= 1
    assert "--token-limit" in quark("serve", "keys", "create", "bad", "--token-limit", "lots", expect=1).output
