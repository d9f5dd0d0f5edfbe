"""The turn router: trained on synthetic turns over a tiny model's embeddings, it beats chance on
held-out templates and on a hand-written set; it falls back to general when unsure; bad labelled
JSONL is one line naming the file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from quark.agent.router import macro_f1, scores
from quark.agent.router_data import LABELS, read_turns, synthetic_turns
from quark.agent.router_train import load_router
from quark.home import Home

HANDWRITTEN = Path(__file__).parent / "data" / "router_handwritten.jsonl"
CHANCE = 1 / len(LABELS)


@pytest.fixture(scope="module")
def router_home(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("router-home")
    shutil.copytree(tiny_model_home / "models", home / "models")
    return home


@pytest.fixture(scope="module")
def trained(router_home: Path) -> dict:
    from conftest import Quark

    return Quark(router_home).json("finetune", "router", "--model", "tiny", "--name", "tiny-router")


def test_synthetic_split_holds_out_templates() -> None:
    train, held = synthetic_turns(seed=0)
    assert {t.label for t in train} == {t.label for t in held} == set(LABELS)
    assert not {t.text for t in train} & {t.text for t in held}
    assert synthetic_turns(seed=0) == (train, held)  # deterministic


def test_router_beats_chance_on_held_out_and_handwritten(trained: dict, router_home: Path) -> None:
    held = trained["figures"]["held_out"]
    assert held["accuracy"] > 2.5 * CHANCE and held["macro_f1"] > 2.5 * CHANCE, held
    router = load_router(Home.open(router_home), "tiny-router")
    hand = scores(router, read_turns(HANDWRITTEN))
    assert hand["turns"] == 30
    assert hand["accuracy"] > 2 * CHANCE and hand["macro_f1"] > 2 * CHANCE, hand
    assert json.loads((router_home / "models" / "tiny-router" / "router.json").read_text())["labels"] == list(LABELS)


def test_route_cli_and_fallback(trained: dict, router_home: Path) -> None:
    from conftest import Quark

    quark = Quark(router_home)
    out = quark.json("route", "write a Python function that parses dates", "--model", "tiny-router")
    assert set(out["scores"]) == set(LABELS) and abs(sum(out["scores"].values()) - 1) < 1e-4
    assert out["label"] == out["predicted"] and not out["fell_back"]
    turn = "draw a picture of a fox on the moon"
    first = quark.json("route", turn, "--model", "tiny-router")
    assert first["confidence"] < 0.99  # label smoothing: never certain
    # The same head with its threshold just above this turn's confidence: it goes to general.
    meta_path = router_home / "models" / "tiny-router" / "router.json"
    meta = json.loads(meta_path.read_text())
    try:
        meta_path.write_text(json.dumps({**meta, "threshold": first["confidence"] + 1e-3}))
        out = quark.json("route", turn, "--model", "tiny-router")
        assert out["fell_back"] and out["label"] == "general" and out["predicted"] == first["predicted"]
        assert out["scores"] == first["scores"]
        assert "fell back" in quark("route", turn, "--model", "tiny-router").stdout
    finally:
        meta_path.write_text(json.dumps(meta))


def test_user_data_is_trained_on(router_home: Path, tmp_path: Path) -> None:
    from conftest import Quark

    data = tmp_path / "turns.jsonl"
    data.write_text("".join(json.dumps({"text": f"zorblax quux {i}", "label": "mesh"}) + "\n" for i in range(20)))
    out = Quark(router_home).json("finetune", "router", "--model", "tiny", "--name", "r2", "--data", str(data),
                                  "--per-label", "30")
    assert out["user_turns"] == 20
    decision = load_router(Home.open(router_home), "r2").route("zorblax quux 7")
    assert decision.predicted == "mesh"


@pytest.mark.parametrize("line, message", [
    ('{"text": "hi", "label": "poetry"}', "unknown label 'poetry'"),
    ('{"text": "hi"}', "missing field 'label'"),
    ('{"text": 3, "label": "code"}', "field 'text' must be str"),
    ("not json", "not valid JSON"),
])
def test_bad_jsonl_is_one_line(router_home: Path, tmp_path: Path, line: str, message: str) -> None:
    from conftest import Quark

    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "fine", "label": "code"}\n' + line + "\n")
    result = Quark(router_home)("finetune", "router", "--model", "tiny", "--name", "bad", "--data", str(data),
                                expect=1)
    assert f"{data}:2: " in result.output and message in result.output
    assert "Traceback" not in result.output and not (router_home / "models" / "bad").exists()


def test_macro_f1_by_hand() -> None:
    truth = ["code", "code", "image", "mesh"]
    predicted = ["code", "image", "image", "mesh"]
    # code: tp1 fn1 → 2/3; image: tp1 fp1 → 2/3; mesh: 1
    assert macro_f1(truth, predicted, LABELS) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
