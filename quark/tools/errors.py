"""The error a tool raises for anything the model should hear about (its own module, so the web
layer and the tool context can raise it without importing what a tool is)."""


class ToolError(Exception):
    """A failure the model should read as a tool error: one line saying what was refused and why."""
