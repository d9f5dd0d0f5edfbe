"""Slash commands typed in the chat input: `/save NAME` and friends."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = {
    "save": "/save NAME [--force]   snapshot this conversation as checkpoint NAME",
    "load": "/load NAME [new]       restore checkpoint NAME (into this conversation, or a new one)",
    "checkpoints": "/checkpoints          pick a checkpoint to load",
    "forget": "/forget ID             delete memory ID (as cited: m12)",
    "pin": "/pin TEXT              keep TEXT in every prompt of this conversation",
    "system": "/system TEXT           set this conversation's system prompt (empty clears it)",
    "model": "/model NAME            switch model",
    "route": "/route [auto|general|code|image|mesh|…]  pin the adapter the next turns use (auto: the router)",
    "search": "/search [--all] QUERY  search the web (a tool panel) and this conversation's memories (--all: every "
              "conversation)",
    "fetch": "/fetch URL              read a web page (a tool panel)",
    "run": "/run [CODE]             run Python in the sandbox: CODE, or the last code block of a reply",
    "index": "/index [NAME]          ground answers in document index NAME (sources cited as [n]); empty: stop",
    "fork": "/fork ID               continue from message #ID (the other branch is kept)",
    "set": "/set [KEY [VALUE]]     this conversation's settings: temperature, top_p, top_k, max_tokens, seed, adapter, "
           "system (no value: the default; /set alone: the settings dialog)",
    "image": "/image PROMPT          draw PROMPT with the image model (saved under assets/)",
    "mesh": "/mesh PROMPT           model PROMPT in 3D (a scene program, built; GLB and preview under assets/)",
    "help": "/help                  this list",
}


@dataclass(frozen=True)
class SlashCommand:
    name: str
    argument: str = ""

    @staticmethod
    def help_text() -> str:
        return "\n".join(COMMANDS.values())


def parse_slash(text: str) -> SlashCommand | None:
    """A SlashCommand for '/name args', None for an ordinary message ('//' sends a literal '/').

    An unknown name becomes `help` (its argument saying which), so a typo shows the list instead
    of being sent to the model."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, argument = stripped[1:].partition(" ")
    name = name.lower()
    if name not in COMMANDS:
        return SlashCommand("help", f"unknown command /{name}")
    return SlashCommand(name, argument.strip())
