"""The error every command raises for bad input (`app.cli.main` prints it as one line)."""


class UserError(Exception):
    """A failure caused by the user's input: printed as one line, exit code 1."""
