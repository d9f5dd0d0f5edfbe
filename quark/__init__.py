"""Quark: own an assistant model end to end, local first.

The library lives here; the CLI (`quark.commands`) and the TUI (`quark.tui`) call into it and the
library never imports them back.
"""

__version__ = "0.1.0"
