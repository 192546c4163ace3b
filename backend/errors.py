"""The backend's one exception type: a problem with its setup that the operator can fix."""


class BackendError(Exception):
    """Bad address, missing keys, unusable job folder: the message says what to do."""
