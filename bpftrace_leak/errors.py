"""The one exception type the CLI turns into a one-line error and exit status."""


class KleakError(Exception):
    """A user-facing failure: its message is printed as one line on stderr.

    ``status`` is the process exit status (2 for bad usage, 1 otherwise).
    """

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status
