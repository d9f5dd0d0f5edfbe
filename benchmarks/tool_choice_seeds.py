"""How often a trained model chooses the tool by itself: the demo's closing question ("What is
37 * 41? Use Python.") asked under N sampling seeds with run_code offered and tool_choice "auto"
(nothing forced), counting the turns that called run_code, whose call ran ok, and whose reply
carries the sandbox's answer (1517). Each turn is a fresh conversation in a scratch copy of the
home, so memory from one seed never leaks into the next.

    python benchmarks/tool_choice_seeds.py --home .quark-demo --model demo [--seeds 20] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._results import write_section  # noqa: E402
from quark.chat import ChatSession  # noqa: E402
from quark.home import Home  # noqa: E402

SECTION = "## Tool choice over seeds"
QUESTION, ANSWER = "What is 37 * 41? Use Python.", "1517"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--note", default="", help="What model this is (recipe, steps), for the record.")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="quark-bench-choice-"))
    shutil.copytree(Path(args.home) / "models" / args.model, scratch / "models" / args.model)
    home = Home.open(scratch)
    called = ran = answered = 0
    for seed in range(args.seeds):
        session = ChatSession(home, model=args.model)
        try:
            session.enable_tools("run_code")
            session.new_conversation()
            result = session.send(QUESTION, session.params(max_tokens=64, temperature=args.temperature, seed=seed))
        finally:
            session.close()
        calls = [c for c in result.tool_calls if c.name == "run_code"]
        called += bool(calls)
        ran += any(c.outcome == "ok" for c in calls)
        answered += ANSWER in result.reply
        print(f"seed {seed}: calls {[c.name + ':' + c.outcome for c in result.tool_calls]} reply {result.reply[:80]!r}")
    text = (f"{SECTION}\n\n`python benchmarks/tool_choice_seeds.py --home {args.home} --model {args.model} --seeds "
            f"{args.seeds}` — {datetime.date.today()}, {platform.machine()} (load average {os.getloadavg()[0]:.1f}); "
            f"temperature {args.temperature}, tool_choice auto, run_code offered. {args.note}\n\n"
            "| turns | chose run_code | the call ran ok | reply carries 1517 |\n|---:|---:|---:|---:|\n"
            f"| {args.seeds} | {called} | {ran} | {answered} |\n")
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
