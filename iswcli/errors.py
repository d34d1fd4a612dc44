"""The one exception type the CLI turns into a single line and exit code 2."""


class IswtError(Exception):
    """Bad input or a broken precondition the user can fix.

    The message is shown as-is on one line: name the file, column or flag and
    the rule that failed.
    """
