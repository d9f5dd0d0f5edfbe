"""The one exception type that means "the user gave us something wrong".

Front ends print a QuarkError as one line and exit 1; anything else is a bug and gets a traceback
under --debug. Keep messages to a single line that names the file, field or value at fault.
"""


class QuarkError(Exception):
    """A user-facing error: bad input, unknown name, unreadable file."""
