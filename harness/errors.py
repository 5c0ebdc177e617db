"""The one exception type the CLI turns into a one-line message and exit code 2."""


class PollbenchError(Exception):
    """A failure the user can act on; ``str(err)`` is a complete one-line message."""
