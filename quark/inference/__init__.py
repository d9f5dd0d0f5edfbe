"""The one inference engine that generate, serve, chat and eval all use."""

from quark.inference.engine import Completion, Engine, StreamEvent
from quark.inference.grammar import Grammar, json_schema_grammar, tool_call_grammar
from quark.inference.prefix_cache import PrefixCache
from quark.inference.sampling import SamplingParams

__all__ = ["Completion", "Engine", "Grammar", "PrefixCache", "SamplingParams", "StreamEvent", "json_schema_grammar",
           "tool_call_grammar"]
