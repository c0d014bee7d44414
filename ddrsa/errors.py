"""User-facing errors: printed as one line, exit code 2, never a traceback."""


class DDRSAError(Exception):
    """A problem with the user's input or environment that the user can fix."""


class DataError(DDRSAError):
    """A data file is missing, truncated or malformed."""
