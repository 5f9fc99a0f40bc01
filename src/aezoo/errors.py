"""The one exception a user's mistake raises; the CLI turns it into one line and exit code 2."""


class UsageError(ValueError):
    """A mistake in what the user asked for or handed over (not a bug in aezoo)."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became non-finite); the last good checkpoint is kept."""


class Interrupted(KeyboardInterrupt):
    """Training was stopped by the user (Ctrl-C); the message says how to resume."""


def printable(text: str) -> str:
    """`text` with its control characters (terminal escapes, newlines) written as escapes, so
    what a file or a path holds never drives a terminal nor breaks a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
