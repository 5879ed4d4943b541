"""The error type for bad input: the command line prints its one-line message and exits with status 2."""


class InputError(ValueError):
    """Bad input (a config, a spec, an argument, a path). The message is one line naming the offending key."""
