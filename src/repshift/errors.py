"""The one exception type that reaches users as a single line."""


class UserError(Exception):
    """Bad input the user can fix: the message names the culprit and what to do."""
