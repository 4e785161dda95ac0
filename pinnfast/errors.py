"""The one exception type for bad input: the CLI prints its message and exits non-zero, without a traceback."""


class PinnfastError(ValueError):
    """A problem with the user's input or configuration, described in one sentence."""
