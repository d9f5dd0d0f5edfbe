"""What acting on earlier messages costs: edit-and-resend and regenerate beside a plain turn, and
the message-tree queries a branched conversation adds (to every prompt, and to every redraw of
the TUI's message list).

A throwaway home with an untrained model (see tui_latency.py) and one conversation of --turns
question/reply pairs, each question with --replies regenerated replies (written through the
store, so building it takes no generation). Then, medians over --repeat runs:
- thread: `store.thread(tip)`, what every prompt already walks (the baseline);
- off-branch: `store.off_branch`, the messages of other branches whose memories a prompt skips
  (new work in every prompt build);
- branches: `ChatSession.branches` over the 200 messages the TUI shows (the "2/3" labels);
- switch: `ChatSession.switch_to` (tip → newest leaf, summary recomputed);
- turns: `send` vs `regenerate` vs `edit_and_resend`, each with a 1-token reply, end to end.

    .venv/bin/python benchmarks/chat_branches.py --turns 500 --replies 3 --repeat 20 --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _results import write_section
from tui_latency import build_home

from quark.chat import ChatSession
from quark.db import transaction


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def build_conversation(session: ChatSession, turns: int, replies: int) -> tuple[int, list[int]]:
    """Questions with `replies` replies each; the tip follows the newest reply. Returns the
    conversation and the first reply of each question."""
    conversation = session.new_conversation("bench").id
    store, parent, firsts = session.store, None, []
    with transaction(session.conn):
        for i in range(turns):
            user = store.insert_message(conversation, parent, "user", f"question {i} about topic {i % 17}")
            made = [store.insert_message(conversation, user.id, "assistant", f"reply {r} to {i}", reply_to=user.id)
                    for r in range(replies)]
            firsts.append(made[0].id)
            parent = made[-1].id
        store.update_conversation(conversation, tip_id=parent)
    return conversation, firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--replies", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        home = build_home(Path(tmp), n_layer=2, n_embd=64, vocab=1000, context=256)
        session = ChatSession(home)
        session.use_model()
        conversation, firsts = build_conversation(session, args.turns, args.replies)
        tip = session.conversation().tip_id
        thread = session.thread()
        shown = thread[-200:]
        rows = {
            "thread (every prompt, baseline)": median_ms(lambda: session.store.thread(tip), args.repeat),
            "off-branch ids (every prompt, new)": median_ms(lambda: session.store.off_branch(conversation, tip),
                                                            args.repeat),
            "branches of the 200 shown messages (TUI redraw)": median_ms(lambda: session.branches(shown),
                                                                         args.repeat),
        }
        middle = firsts[len(firsts) // 2]
        rows["switch_to a reply halfway up"] = median_ms(lambda: (session.switch_to(middle), session.switch_to(tip)),
                                                         args.repeat) / 2
        params = session.params(max_tokens=1, temperature=1.0, seed=0)
        session.start_new()
        first = session.send("My name is Ada and I like sailing boats.", params)
        turns = {
            "send": median_ms(lambda: session.send("Tell me more about boats.", params), args.repeat),
            "regenerate": median_ms(lambda: session.regenerate(first.assistant_message_id, params), args.repeat),
            "edit_and_resend": median_ms(lambda: session.edit_and_resend(first.user_message_id,
                                                                         "My name is Bob and I row.", params),
                                         args.repeat),
        }
        messages = session.store.count_messages(conversation)
        session.close()
    base = rows["thread (every prompt, baseline)"]
    lines = [f"| {name} | {ms:.2f} ms | {ms / base:.2f}x |" for name, ms in rows.items()]
    turn_lines = [f"| {name} | {ms:.1f} ms | {ms / turns['send']:.2f}x |" for name, ms in turns.items()]
    text = (f"## Chat branches\n\n`.venv/bin/python benchmarks/chat_branches.py --turns {args.turns} --replies "
            f"{args.replies} --repeat {args.repeat}{' --write' if args.write else ''}` — 2026-12-02, 2-core CPU, "
            f"shared (load average {os.getloadavg()[0]:.1f}), {args.threads} torch thread(s).\n\n"
            f"One conversation of {args.turns} questions with {args.replies} replies each ({messages} messages, "
            f"the shown thread {len(thread)} long); medians of {args.repeat}.\n\n"
            "| tree query | median | vs thread |\n|---|---:|---:|\n" + "\n".join(lines) +
            "\n\nA turn end to end (untrained 2-layer model, 1-token reply, a short conversation):\n\n"
            "| turn | median | vs send |\n|---|---:|---:|\n" + "\n".join(turn_lines) + "\n")
    print(text)
    if args.write:
        write_section("## Chat branches", text)


if __name__ == "__main__":
    main()
