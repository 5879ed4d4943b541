"""The error type for bad input and the exit statuses of the command line (bad input: one line, status 2)."""

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class InputError(ValueError):
    """Bad input (a config, a spec, an argument, a path). The message is one line naming the offending key."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
