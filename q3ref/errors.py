"""The one exception type that the CLI turns into a one-line message and exit status 2."""


class Q3RefError(Exception):
    """A problem with the user's input or files, stated in one line."""
