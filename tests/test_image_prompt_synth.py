"""The image-prompt specialist's data (`quark data synth --kind image-prompt`): everyday picture asks
whose reply is exactly the caption the image model knows, deterministic per seed, held out by
(colour, shape, position) so no held-out combination reaches train; the router's `image` label
answers with the adapter this data trains."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

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


FAST_IMAGE = """
model: {size: 16, channels: "16,32", attention: "1", head_dim: 16, cross_attention_dim: 32, norm_groups: 8,
        text_max_tokens: 48}
diffusion: {prediction_type: sample, steps: 10, guidance: 3.0}
data: {colours: "red,green,blue", backgrounds: "white", images: 64, heldout_images: 8}
train: {micro_batch: 8, max_steps: 2, eval_every: 0, save_every: 2, keep_last: 1, device: cpu}
"""


def test_image_model_feedback_scores_every_pair_and_keeps_those_it_draws(quark: Quark, tiny_model_home: Path,
                                                                         tmp_path: Path) -> None:
    """Each kept row's adherence is the analyser's reading of the image model's drawing of its
    caption (redrawn here with the recorded seed and steps: the same seed, the same score); pairs
    below the bar are dropped. Two training steps only: the model barely follows its prompt, so the
    bar is set at half the attributes to keep some pairs."""
    import numpy as np

    from quark.home import Home
    from quark.image.evaluate import analyse
    from quark.image.generate import ImageModel
    from quark.image.prompt_synth import _full_tables

    shutil.rmtree(quark.home)
    shutil.copytree(tiny_model_home, quark.home)
    (tmp_path / "img.yaml").write_text(FAST_IMAGE)
    quark("image", "train", "--builtin", "shapes", "--recipe", str(tmp_path / "img.yaml"), "--name", "img",
          "--text-encoder", "tiny")
    synth_args = ["data", "synth", "--kind", "image-prompt", "--seed", str(SEED), "--image-model", "img",
                  "--image-steps", "2", "--min-adherence", "0.5"]
    out = quark.json(*synth_args, "--name", "judged")
    assert (out["image_model"], out["image_steps"], out["min_adherence"]) == ("img", 2, 0.5)
    folder = quark.home / "data" / "judged"
    rows = [json.loads(line) for name in ("train", "val")
            for line in (folder / f"{name}.jsonl").read_text().splitlines()]
    everything = {row["caption"] for _, row in image_prompt_rows(SEED)}
    kept = {row["caption"] for row in rows}
    assert rows and kept < everything  # some pairs pass, and the feedback drops others
    assert all(row["adherence"]["score"] >= 0.5 and row["adherence"]["model"] == "img" for row in rows)

    model = ImageModel(Home.open(quark.home), "img")
    for row in rows[:6]:
        score = row["adherence"]
        images, _ = model.images([row["caption"]], [score["seed"]], steps=score["steps"], sampler="ddim")
        reading = analyse(np.asarray(images[0]), _full_tables())
        judged = ("colour", "position", "shape", "size", "background")
        assert {a: float(getattr(reading, a) == row["scene"][a]) for a in judged} == {a: score[a] for a in judged}

    for args, needle in [(["--image-model", "nope"], "'nope'"), (["--image-model", "tiny"], "not an image model"),
                         (["--image-model", "img", "--min-adherence", "2"], "--min-adherence 2"),
                         (["--min-adherence", "0.5"], "give --image-model")]:  # a score with nothing to score
        result = quark("data", "synth", "--kind", "image-prompt", "--name", "bad", *args, expect=None)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and needle in result.output, result.output
        assert not (quark.home / "data" / "bad").exists()
