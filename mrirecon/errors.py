"""The one exception type that the CLI turns into an `error:` line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (file, key, option): the message is one line that names it."""
