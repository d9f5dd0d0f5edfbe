"""The front ends that make meshes: `/mesh` in the TUI and in scripted chat, the generate_mesh tool
through run_tool_call, and `/v1/meshes` on a real loopback server; plus the decimate → GLB round
trip of the must-show. The model is the tiny test model taught one prompt (tests/mesh_fixtures.py),
so every front end sees a whole asset made by the real path (engine, grammar, build, files, row)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
from pathlib import Path

import httpx
import pytest
import trimesh

from mesh_fixtures import MODEL, PROMPT, mesh_model_home  # noqa: F401  (the fixture)
from quark import db
from quark.assets import list_assets
from quark.home import Home


@pytest.fixture
def home(mesh_model_home: Path, tmp_path: Path) -> Path:  # noqa: F811
    copy = tmp_path / "home"
    shutil.copytree(mesh_model_home, copy)
    return copy


def _rows(home: Path) -> list:
    return list_assets(db.connect(home / "quark.db")) if (home / "quark.db").exists() else []


def _faces(data: bytes) -> int:
    return len(trimesh.load(io.BytesIO(data), file_type="glb", force="mesh").faces)


def test_decimated_80k_mesh_stays_watertight_and_its_glb_reloads_with_the_same_faces(tmp_path: Path) -> None:
    from quark.mesh import export
    from quark.mesh.decimate import decimate
    from quark.mesh.repair import checks
    from quark.mesh.solid import Group, Solid

    sphere = trimesh.creation.icosphere(subdivisions=6)  # 81,920 faces
    small = decimate(Solid.single(sphere, Group("ball", (200, 40, 40, 255))), target_faces=8000)
    assert checks(small.mesh)["watertight"] and 7600 <= len(small.mesh.faces) <= 8000
    export.save(small, tmp_path / "ball.glb")
    back = export.load(tmp_path / "ball.glb")
    assert len(back.mesh.faces) == len(small.mesh.faces) and checks(back.mesh)["watertight"]
    assert _faces((tmp_path / "ball.glb").read_bytes()) == len(small.mesh.faces)  # trimesh alone agrees


def test_scripted_chat_mesh_returns_the_asset(quark, home: Path) -> None:
    quark.home = home
    reply = quark.json("chat", "--mesh-model", MODEL, "--message", f"/mesh {PROMPT}")
    asset = reply["asset"]
    assert Path(reply["mesh"]).is_file() and Path(reply["preview"]).is_file() and reply["mesh"].endswith(".glb")
    assert asset["watertight"] and asset["volume"] > 0 and asset["program"]["parts"][0]["color"] == "red"
    assert _faces(Path(reply["mesh"]).read_bytes()) == asset["faces"]
    (row,) = _rows(home)
    assert (row.id, row.prompt, row.model, row.path) == (asset["asset_id"], PROMPT, MODEL, reply["mesh"])
    empty = quark("chat", "--mesh-model", MODEL, "--message", "/mesh   ", expect=1)
    assert "usage: /mesh PROMPT" in empty.output
    unknown = quark("chat", "--mesh-model", "nope", "--message", f"/mesh {PROMPT}", expect=1)
    lines = [line for line in unknown.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope" in lines[0] and "Traceback" not in unknown.output
    no_adapter = quark("chat", "--mesh-model", MODEL, "--mesh-adapter", "nope", "--message", f"/mesh {PROMPT}",
                       expect=1)
    assert "nope" in no_adapter.output and len(_rows(home)) == 1  # nothing written by the refusals


def test_tui_mesh_shows_the_preview_and_the_checks(home: Path) -> None:
    from textual_image.widget import Image as ImageWidget

    from quark.tui.app import ChatApp
    from quark.tui.widgets import MessageView

    async def run() -> None:
        app = ChatApp(Home.open(home), model="tiny", mesh_model=MODEL)
        async with app.run_test(size=(120, 40)) as pilot:
            await app.workers.wait_for_complete()
            app.query_one("#prompt").value = f"/mesh {PROMPT}"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            asset = app.last_mesh
            assert asset is not None and Path(asset["path"]).is_file()
            (picture,) = app.query(ImageWidget)
            assert str(picture.image) == asset["preview"]
            caption = [v for v in app.query(MessageView) if v.role == "assistant"][-1].text
            assert f"{asset['faces']:,} faces" in caption and "watertight" in caption and asset["path"] in caption
            assert "volume" in caption and " × " in caption  # the volume and the bounds' size
            app.query_one("#prompt").value = "/mesh"
            await pilot.press("enter")
            await pilot.pause()
            assert len(app.query(ImageWidget)) == 1  # the usage error makes nothing

    asyncio.run(run())
    assert len(_rows(home)) == 1


def test_generate_mesh_tool_through_run_tool_call(home: Path) -> None:
    from quark.tools.context import ToolContext, ToolPolicy
    from quark.tools.runner import registry, run_tool_call

    tool = registry().get("generate_mesh")
    assert tool is not None and tool.risk.value == "risky"
    refused = run_tool_call("generate_mesh", {"prompt": PROMPT}, ToolContext.open(Home.open(home)))
    assert refused.outcome == "denied" and not _rows(home)  # risky: neither allowed nor confirmed
    context = ToolContext.open(Home.open(home), policy=ToolPolicy(allow_risky=True))
    unset = run_tool_call("generate_mesh", {"prompt": PROMPT}, context)
    assert unset.outcome == "error" and "[tools.generate_mesh]" in unset.error
    (home / "config.toml").write_text(f'[tools.generate_mesh]\nmodel = "{MODEL}"\n')
    context = ToolContext.open(Home.open(home), policy=ToolPolicy(allow_risky=True))
    bad = run_tool_call("generate_mesh", {"prompt": PROMPT, "faces": 2}, context)
    assert bad.outcome == "invalid_arguments" and "faces" in bad.error
    result = run_tool_call("generate_mesh", {"prompt": PROMPT, "format": "stl", "faces": 200}, context)
    assert result.ok, result.error
    out = result.output
    assert out["format"] == "stl" and out["path"].endswith(".stl") and out["faces"] <= 200 and out["watertight"]
    assert Path(out["preview"]).is_file() and "watertight" in out["summary"]
    (row,) = _rows(home)
    assert row.id == out["asset_id"] and row.prompt == PROMPT
    audit = db.connect(home / "quark.db").execute("SELECT tool, outcome FROM tool_calls ORDER BY id").fetchall()
    assert [tuple(r) for r in audit] == [("generate_mesh", "denied"), ("generate_mesh", "error"),
                                         ("generate_mesh", "invalid_arguments"), ("generate_mesh", "ok")]


def test_v1_meshes_returns_a_glb_that_reloads_with_its_face_count(home: Path) -> None:
    from quark.inference import Engine
    from quark.serving import BackgroundServer, create_app
    from quark.serving.meshes import MeshService

    root = Home.open(home)
    engine = Engine.named(root, MODEL, device="cpu")
    with BackgroundServer(create_app(engine, meshes=MeshService(root, engine))) as server:
        url = f"{server.url}/v1/meshes"
        answer = httpx.post(url, json={"prompt": PROMPT, "model": MODEL, "faces": 300, "seed": 1}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "model/gltf-binary"
        faces = int(answer.headers["x-quark-faces"])
        assert faces <= 300 and _faces(answer.content) == faces
        assert json.loads(answer.headers["x-quark-watertight"]) is True
        preview = httpx.get(answer.headers["x-quark-preview-url"], timeout=30)
        assert preview.status_code == 200 and preview.content[:4] == b"\x89PNG"

        as_json = httpx.post(url, json={"prompt": PROMPT, "response_format": "b64_json"}, timeout=120).json()
        item = as_json["data"][0]
        glb = base64.b64decode(item["b64_json"])
        assert _faces(glb) == item["faces"] and item["watertight"] and as_json["model"] == MODEL
        assert httpx.get(item["url"], timeout=30).content == glb

        for body, status, param in [({"prompt": PROMPT, "faces": 0}, 400, "faces"),
                                    ({"prompt": PROMPT, "format": "fbx"}, 400, "format"),
                                    ({"prompt": "   "}, 400, "prompt"),
                                    ({}, 400, "prompt"),
                                    ({"prompt": PROMPT, "model": "nope"}, 404, "model"),
                                    ({"prompt": PROMPT, "adapter": "nope"}, 404, "adapter")]:
            refused = httpx.post(url, json=body, timeout=30)
            error = refused.json()["error"]
            assert refused.status_code == status and error["param"] == param and error["message"], (body, error)
        missing = httpx.get(f"{server.url}/v1/meshes/files/999.glb", timeout=30)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert len(_rows(home)) == 2  # the refused requests wrote nothing
