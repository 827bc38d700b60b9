"""The one exception type for bad user input; the CLI turns it into exit code 2."""


class UserError(ValueError):
    """Bad input from the user (a file, a field, an option). The message names it and the fix."""
