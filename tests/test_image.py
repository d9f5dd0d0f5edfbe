"""`quark image`: the saved pipeline, exact resume, generation with provenance, bad input, adherence,
the OpenAI images endpoint and /image in chat — all on tiny models trained here in seconds."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from quark import db
from quark.home import Home
from quark.image import shapes
from quark.image.evaluate import analyse, evaluate

# 16 px, three colours, one background: learns colour from text in a couple of hundred small steps
# (one save, at the end). 150 steps reach only ~0.52-0.54 colour accuracy against 1/3 chance: too close to the bar.
FAST = """
model: {size: 16, channels: "16,32", attention: "1", head_dim: 16, cross_attention_dim: 32, norm_groups: 8,
        text_max_tokens: 48}
diffusion: {prediction_type: sample, snr_gamma: 5.0, caption_dropout: 0.1, ema_decay: 0.9, steps: 10, guidance: 3.0}
data: {colours: "red,green,blue", backgrounds: "white", images: 512, heldout_images: 8}
optim: {lr: 3.0e-3, betas: [0.9, 0.99], weight_decay: 0.0, warmup: 10}
train: {micro_batch: 8, max_steps: 200, eval_every: 0, save_every: 200, keep_last: 1, device: cpu}
"""
PROMPT = "a large red circle in the center on a white background"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "fast.yaml"
    path.write_text(FAST)
    return path


def _home(tiny_model_home: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(tiny_model_home, home)
    return home


@pytest.fixture(scope="module")
def image_home(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> Path:
    """A home with LM `tiny` and image model `img`, trained for a few steps only (for the plumbing)."""
    from typer.testing import CliRunner

    from quark.commands import app

    home = _home(tiny_model_home, tmp_path_factory.mktemp("image"))
    result = CliRunner().invoke(app, ["image", "train", "--builtin", "shapes", "--recipe", str(recipe), "--name", "img",
                                      "--text-encoder", "tiny", "--max-steps", "2", "--home", str(home)])
    assert result.exit_code == 0, result.output
    return home


@pytest.mark.parametrize("options", [False, True])
def test_saved_pipeline_loads_back_to_identical_images(tiny_model_home: Path, tmp_path: Path, options: bool) -> None:
    """Plain, and with the recipe's UNet options (coordinate channels, FiLM scale-shift, the text
    layout map through its hidden layer) on."""
    from quark.image.data import CaptionTable
    from quark.modelfolder import load_model, load_tokenizer
    from quark.models.diffusion import (
        QuarkImagePipeline,
        QuarkTextEncoder,
        UNetShape,
        build_layout,
        build_unet,
        training_scheduler,
    )

    folder = tiny_model_home / "models" / "tiny"
    encoder = QuarkTextEncoder(load_model(folder), load_tokenizer(folder), 48)
    CaptionTable.build(encoder, [PROMPT, "a large blue square at the bottom right on a black background"]
                       ).fit_standardization(encoder)
    hidden, mask = encoder.encode([PROMPT])
    assert hidden[mask].mean().abs() < 1.0 and encoder.shift.abs().sum() > 0  # states centred, offset kept
    shape = UNetShape(size=16, channels="16,32", attention="1", coordinates=options, scale_shift=options,
                      layout_channels=3 if options else 0, layout_grid=4, layout_hidden=8 if options else 0)
    layout = build_layout(shape, 64)
    if layout is not None:  # trained-looking weights, so the map is far from zero and must load back
        torch.nn.init.normal_(layout.project.weight, std=1.0)
    pipeline = QuarkImagePipeline(unet=build_unet(shape, 64), scheduler=training_scheduler(), text_encoder=encoder,
                                  layout=layout)
    pipeline.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "text_encoder" / "tokenizer.model").is_file()  # the encoder travels with it
    loaded = QuarkImagePipeline.from_pretrained(tmp_path / "pipe")
    assert loaded.unet.config.in_channels == (3 + 2 + 3 if options else 3)  # the x, y and layout channels too
    assert loaded.unet.config.resnet_time_scale_shift == ("scale_shift" if options else "default")
    assert (loaded.layout is None) == (not options)
    for statistic in ("shift", "scale"):  # the standardization travels with the encoder
        assert torch.equal(getattr(loaded.text_encoder, statistic), getattr(encoder, statistic))
    if options:
        assert all(torch.equal(a, b) for a, b in zip(loaded.layout.state_dict().values(),
                                                     layout.state_dict().values(), strict=True))
    for sampler in ("ddim", "dpm"):
        kwargs = dict(num_inference_steps=4, seed=11, sampler=sampler, output_type="np", negative_prompt="blue")
        a, b = pipeline(PROMPT, **kwargs).images, loaded(PROMPT, **kwargs).images
        assert a.shape == (1, 16, 16, 3) and np.array_equal(a, b)
        other = loaded(PROMPT, **{**kwargs, "seed": 12}).images
        assert not np.array_equal(a, other)
    assert loaded(PROMPT, num_inference_steps=2).nsfw_content_detected is None  # the empty safety-checker slot


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def test_interrupted_training_resumes_loss_for_loss(quark, tiny_model_home: Path, recipe: Path) -> None:
    shutil.rmtree(quark.home)
    shutil.copytree(tiny_model_home, quark.home)
    common = ["--builtin", "shapes", "--recipe", str(recipe), "--text-encoder", "tiny", "--set", "train.micro_batch=4",
              "--save-every", "3"]
    quark("image", "train", "--name", "whole", *common, "--max-steps", "6")
    quark("image", "train", "--name", "cut", *common, "--max-steps", "3")
    resumed = quark.json("image", "train", "--name", "cut", "--resume", "--max-steps", "6")
    assert resumed["resumed_from"].endswith("step-000003")
    home = Home.open(quark.home)
    whole, cut = _losses(home.run_dir("whole")), _losses(home.run_dir("cut"))
    assert len(whole) == len(cut) == 6 and whole == cut


def test_the_analyser_reads_every_drawn_scene_and_heldout_combinations_are_unseen() -> None:
    vocabulary = shapes.Vocabulary()
    reference = evaluate(None, vocabulary, size=32)
    assert reference["colour"] == reference["position"] == reference["size"] == 1.0 and reference["shape"] >= 0.95
    train = {s.combination for s in shapes.scenes(vocabulary, 2000, seed=0, split="train")}
    heldout = {s.combination for s in shapes.heldout_prompts(vocabulary)}
    assert heldout and not heldout & train and len(train) == len(vocabulary.split("train"))
    blank = np.full((32, 32, 3), 255, np.uint8)
    assert analyse(blank, vocabulary).colour is None  # nothing drawn: every attribute wrong


def test_generate_writes_pngs_with_provenance_and_asset_rows(quark, image_home: Path, tmp_path: Path) -> None:
    quark.home = image_home
    out = quark.json("image", "generate", PROMPT, "--model", "img", "--seed", "5", "--steps", "3", "--n", "2",
                     "--negative", "blue square", "--sampler", "dpm")
    first, second = out["images"]
    assert (first["seed"], second["seed"]) == (5, 6) and Path(first["path"]).parent == image_home / "assets"
    with Image.open(first["path"]) as png:
        text = dict(png.text)
        assert png.size == (16, 16)
    assert text["prompt"] == PROMPT and text["negative_prompt"] == "blue square" and text["seed"] == "5"
    assert text["steps"] == "3" and text["model"] == "img" and text["sampler"] == "dpm"
    again = quark.json("image", "generate", PROMPT, "--model", "img", "--seed", "6", "--steps", "3",
                       "--negative", "blue square", "--sampler", "dpm", "-o", str(tmp_path / "again.png"))
    assert again["images"][0]["path"] == str(tmp_path / "again.png")
    assert np.array_equal(np.asarray(Image.open(second["path"])), np.asarray(Image.open(tmp_path / "again.png")))
    conn = db.connect(image_home / "quark.db")
    rows = conn.execute("SELECT kind, path, sha256, seed, params FROM assets ORDER BY id").fetchall()
    assert [(r["kind"], r["seed"]) for r in rows] == [("image", 5), ("image", 6), ("image", 6)]
    assert json.loads(rows[0]["params"])["steps"] == 3
    assert all(r["sha256"] == hashlib.sha256(Path(r["path"]).read_bytes()).hexdigest() for r in rows)


def _one_line_error(result, *needles: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(n in result.output for n in needles), result.output


def test_bad_input_is_one_line_and_leaves_nothing(quark, image_home: Path, tmp_path: Path) -> None:
    quark.home = image_home
    assets = sorted((image_home / "assets").glob("*")) if (image_home / "assets").exists() else []
    for args, needles in [(["--size", "7"], ["--size 7"]), (["--steps", "0"], ["--steps 0"]),
                          (["--n", "0"], ["--n 0"])]:
        _one_line_error(quark("image", "generate", PROMPT, "--model", "img", *args, expect=None), *needles)
    refused = quark("image", "generate", "a nude figure on a white background", "--model", "img", expect=None)
    _one_line_error(refused, "safety filter", "'nude'")
    (image_home / "config.toml").write_text('[image]\ndeny_extra = ["circle"]\n')
    _one_line_error(quark("image", "generate", PROMPT, "--model", "img", expect=None), "'circle'")
    (image_home / "config.toml").write_text("[image]\nsafety_filter = false\n")
    quark("image", "generate", "a nude figure", "--model", "img", "--steps", "1", "-o", str(tmp_path / "ok.png"))
    (image_home / "config.toml").unlink()
    assert sorted((image_home / "assets").glob("*")) == assets  # nothing from the refused requests

    corrupt, orphan = tmp_path / "corrupt", tmp_path / "orphan"
    for folder in (corrupt, orphan):
        folder.mkdir()
        shapes.draw(shapes.heldout_prompts(shapes.Vocabulary())[0], 32).save(folder / "good.png")
        (folder / "good.txt").write_text("a red circle")
    (corrupt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (corrupt / "broken.txt").write_text("a broken image")
    (orphan / "lonely.txt").write_text("a caption without its image")
    train = ["image", "train", "--text-encoder", "tiny", "--max-steps", "1"]
    _one_line_error(quark(*train, "--data", str(corrupt), "--name", "c", expect=None), "broken.png", "unreadable")
    _one_line_error(quark(*train, "--data", str(orphan), "--name", "o", expect=None), "lonely.txt", "without its image")
    _one_line_error(quark("image", "train", "--builtin", "shapes", "--name", "x", expect=None), "--text-encoder")
    home = Home.open(image_home)
    for name in ("c", "o", "x"):
        assert not home.run_dir(name).exists() and not home.model_dir(name).exists()
    skipped = quark.json(*train, "--data", str(corrupt), "--name", "c", "--skip-bad", "--recipe", "image-tiny",
                         "--set", "train.micro_batch=2")
    assert skipped["images"] == 1 and "broken.png" in skipped["skipped_images"][0]


@pytest.mark.slow
def test_short_training_follows_the_colour_in_heldout_prompts(quark, tiny_model_home: Path, recipe: Path) -> None:
    shutil.rmtree(quark.home)
    shutil.copytree(tiny_model_home, quark.home)
    quark("image", "train", "--builtin", "shapes", "--recipe", str(recipe), "--text-encoder", "tiny", "--name", "col")
    result = quark.json("eval", "image", "--model", "col", "--samples", "3")
    metrics = result["metrics"]
    assert metrics["images"] == 3 * metrics["prompts"] and metrics["colour_chance"] == pytest.approx(1 / 3)
    assert metrics["colour"] >= metrics["colour_chance"] + 0.2, metrics
    report = quark.json("eval", "report", "--model", "col")
    assert report["results"][0]["task"] == "image" and report["results"][0]["run"] == "col"
    assert "| image | colour |" in (Home.open(quark.home).model_dir("col") / "card.md").read_text()


@pytest.mark.slow
def test_openai_client_gets_a_png_beside_the_language_model(image_home: Path) -> None:
    import httpx
    import openai

    from quark.image.generate import ImageModel
    from quark.inference import Engine
    from quark.serving import BackgroundServer, create_app
    from quark.serving.images import ImageService

    home = Home.open(image_home)
    engine = Engine.load(home.model_dir("tiny"))
    app = create_app(engine, images=ImageService([ImageModel(home, "img")]))
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
        assert {m.id for m in client.models.list().data} == {"tiny", "img"}
        result = client.images.generate(model="img", prompt=PROMPT, size="16x16", response_format="b64_json",
                                        extra_body={"seed": 3, "steps": 2})
        png = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
        assert png.format == "PNG" and png.size == (16, 16) and png.text["seed"] == "3"
        fetched = httpx.get(result.data[0].url, timeout=30)
        assert fetched.status_code == 200 and fetched.content == base64.b64decode(result.data[0].b64_json)
        with pytest.raises(openai.BadRequestError) as refused:
            client.images.generate(model="img", prompt="nsfw art")
        assert refused.value.code == "content_policy_violation"
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="img", messages=[{"role": "user", "content": "hi"}])


def test_chat_image_message_returns_the_asset_path(quark, image_home: Path) -> None:
    quark.home = image_home
    reply = quark.json("chat", "--image-model", "img", "--message", f"/image {PROMPT}", "--seed", "1")
    assert Path(reply["image"]).is_file() and reply["asset"]["prompt"] == PROMPT and reply["asset"]["seed"] == 1


def test_tui_image_command_renders_and_saves(image_home: Path) -> None:
    from textual_image.widget import Image as ImageWidget

    from quark.tui.app import ChatApp

    async def run() -> None:
        app = ChatApp(Home.open(image_home), model="tiny", image_model="img")
        async with app.run_test(size=(120, 40)) as pilot:
            await app.workers.wait_for_complete()
            app.query_one("#prompt").value = f"/image {PROMPT}"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.last_image and Path(app.last_image).is_file()
            assert len(app.query(ImageWidget)) == 1

    asyncio.run(run())


def test_recipes_load_and_refuse_values_that_cannot_train() -> None:
    from quark.errors import QuarkError
    from quark.image.recipe import load_image_recipe

    assert load_image_recipe("image-tiny").model.size == 32
    gpu = load_image_recipe("image-gpu")
    assert gpu.model.size == 64 and gpu.train.dtype == "bfloat16"
    for override, needle in [("model.size=30", "model.size 30"), ("model.channels=16,33", "model.channels"),
                             ("train.strategy=fsdp", "ddp"), ("diffusion.sampler=euler", "diffusion.sampler"),
                             ("data.colours=red,teal", "colours"), ("model.layout_grid=0", "model.layout_grid"),
                             ("model.nope=1", "unknown recipe key")]:
        with pytest.raises(QuarkError, match=needle):
            load_image_recipe("image-tiny", [override])
