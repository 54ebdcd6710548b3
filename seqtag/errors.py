"""The error type that the command line turns into a one-line message."""


class SeqtagError(ValueError):
    """Bad input or a bad request from the user: the message says what and where."""
