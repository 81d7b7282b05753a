"""The one user-facing exception type."""


class SeqrecError(Exception):
    """A problem with the user's input (file, field, option) that the user can fix.

    The message names the file, line or field and what was expected. The CLI prints it and exits 2;
    the service turns it into a 4xx. Any other exception is a bug and keeps its traceback.
    """
