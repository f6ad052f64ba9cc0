"""The project's user-facing error: bad input or a missing file, reported without a traceback."""


class WMoEError(Exception):
    """An error the user can fix; the message names the file or dataset and says what to do."""
