"""The one exception type that reaches users as a single line."""


class UserError(Exception):
    """Bad input the user can fix: the message names the culprit and what to do, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
