"""The image-prompt specialist on held-out asks: does it rewrite an everyday picture ask into the
exact caption the image model draws?

For every row of a `quark data synth --kind image-prompt` split (default `val`: (colour, shape,
position) combinations never seen in training), the model answers the ask greedily, and the reply
is graded against the row's caption:

    exact        the reply is the caption, character for character (what `quark image generate
                 --prompt` needs: the image model knows only this form)
    <attribute>  for colour, shape, size, position and background: the first table word of that
                 attribute in the reply (e.g. "top left", "grey" counts as no gray) is the caption's

Each attribute's chance level (1 / its number of values) is printed beside it. A base that only
copies the ask's words gets the colour (asks always name it as the caption does) but not the size
or position wording the caption form uses.

    python benchmarks/image_prompt_eval.py --data ip --model base --adapter image-prompt
    python benchmarks/image_prompt_eval.py --data ip --model base          # the same base alone
"""

from __future__ import annotations

import argparse
import json
import re
import time

from quark.home import Home
from quark.image.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES
from quark.inference import Engine, SamplingParams

WORDS: dict[str, tuple[str, ...]] = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES),
                                     "position": tuple(POSITIONS), "background": tuple(BACKGROUNDS)}


def first_word(reply: str, attribute: str) -> str | None:
    """The table word of `attribute` that occurs first in `reply` (whole words), or None."""
    found = [(m.start(), word) for word in WORDS[attribute]
             for m in [re.search(rf"\b{re.escape(word)}\b", reply)] if m]
    return min(found)[1] if found else None


def grade(rows: list[dict], replies: list[str]) -> dict:
    n = len(rows)
    metrics: dict = {"asks": n, "exact": sum(r.strip() == row["caption"] for row, r in zip(rows, replies)) / n}
    for attribute, words in WORDS.items():
        metrics[attribute] = sum(first_word(r, attribute) == row["scene"][attribute]
                                 for row, r in zip(rows, replies)) / n
        metrics[f"{attribute}_chance"] = round(1 / len(words), 3)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=None, help="Quark home (default: $QUARK_HOME or ~/.quark)")
    parser.add_argument("--data", required=True, help="an image-prompt dataset (quark data synth --kind image-prompt)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--show", type=int, default=3, help="print this many (ask, reply, caption) examples")
    args = parser.parse_args()

    home = Home.open(args.home)
    path = home.dataset_dir(args.data) / f"{args.split}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()][:args.limit]
    start = time.perf_counter()
    engine = Engine.load(home.model_dir(args.model), adapter=args.adapter)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    replies: list[str] = []
    for i in range(0, len(rows), args.batch):
        prompts = [engine.chat_prompt([{"role": "user", "content": row["prompt"]}]) for row in rows[i:i + args.batch]]
        replies += [c.text for c in engine.generate(prompts, params)]
    metrics = grade(rows, replies)
    metrics.update(model=args.model, adapter=args.adapter, data=args.data, split=args.split,
                   seconds=round(time.perf_counter() - start, 1))
    for row, reply in list(zip(rows, replies))[:args.show]:
        print(json.dumps({"ask": row["prompt"], "reply": reply, "caption": row["caption"]}))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
