"""Chat: the session that the TUI and the scripted `quark chat` share, the prompt builder, the
conversation store and checkpoints."""

from quark.chat.session import ChatSession, Turn, TurnResult

__all__ = ["ChatSession", "Turn", "TurnResult"]
