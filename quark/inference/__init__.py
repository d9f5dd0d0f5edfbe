"""The one inference engine that generate, serve, chat and eval all use."""

from quark.inference.engine import Completion, Engine, StreamEvent
from quark.inference.sampling import SamplingParams

__all__ = ["Completion", "Engine", "SamplingParams", "StreamEvent"]
