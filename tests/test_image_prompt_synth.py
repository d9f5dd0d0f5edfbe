"""The image-prompt specialist's data (`quark data synth --kind image-prompt`): everyday picture asks
whose reply is exactly the caption the image model knows, deterministic per seed, held out by
(colour, shape, position) so no held-out combination reaches train; the router's `image` label
answers with the adapter this data trains."""

from __future__ import annotations

import json
import re

from conftest import Quark
from quark.agent.routing import adapter_for
from quark.data import synth
from quark.image.prompt_synth import image_prompt_rows
from quark.image.shapes import Scene

SEED, FRACTION = 2, 0.2


def test_replies_are_the_captions_of_the_scenes_asked_for() -> None:
    rows = list(image_prompt_rows(SEED))
    assert rows == list(image_prompt_rows(SEED)) and rows != list(image_prompt_rows(SEED + 1))
    for group, row in rows:
        scene = Scene(**row["scene"])
        user, reply = row["messages"]
        assert (user["role"], reply["role"]) == ("user", "assistant") and user["content"] == row["prompt"]
        assert reply["content"] == row["caption"] == scene.caption
        assert group == f"image-prompt:{scene.colour}:{scene.shape}:{scene.position}"
        assert scene.colour in row["prompt"] and row["prompt"] != scene.caption
        assert not re.search(r"\ba [aeiou]", row["prompt"], re.IGNORECASE)
    # Everyday wording: synonyms the caption never uses appear in the asks.
    asks = " ".join(r["prompt"] for _, r in rows)
    assert all(word in asks for word in ("tiny", "huge", "dot", "in the middle", "grey", "upper left"))


def test_synth_writes_a_split_held_out_by_combination(quark: Quark) -> None:
    out = quark.json("data", "synth", "--kind", "image-prompt", "--name", "ip", "--seed", str(SEED),
                     "--val-fraction", str(FRACTION))
    folder = quark.home / "data" / "ip"
    split = {name: [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]
             for name in ("train", "val")}
    assert out["kinds"] == {"image-prompt": len(split["train"]) + len(split["val"])}
    assert out["counts"] == {"train": len(split["train"]), "val": len(split["val"])}

    def combos(rows: list[dict]) -> set[tuple[str, str, str]]:
        return {(r["scene"]["colour"], r["scene"]["shape"], r["scene"]["position"]) for r in rows}

    train, val = combos(split["train"]), combos(split["val"])
    assert val and not train & val
    assert all(synth.in_validation(f"image-prompt:{':'.join(c)}", SEED, FRACTION) for c in val)
    for i in range(3):  # each held-out colour, shape and position is seen in training, in other combinations
        assert {c[i] for c in val} <= {c[i] for c in train}


def test_the_image_route_answers_with_the_image_prompt_adapter() -> None:
    assert adapter_for("image", ["code", "image-prompt"]) == "image-prompt"
