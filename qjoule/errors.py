"""The one exception type for bad input.

Anything a user can get wrong (a value out of range, a missing file, a corrupt model) is raised
as `UserError` with a one-line message that quotes the bad value and says what was expected.
The CLI prints it as `qjoule: error: ...` and exits with code 2, without a traceback.
"""


class UserError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        if "\n" in message:
            raise ValueError(f"UserError messages are one line, got {message!r}")
        super().__init__(message)
