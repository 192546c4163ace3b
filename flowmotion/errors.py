"""The one exception type of the FlowMotion library, and its cancellation case."""


class FlowMotionError(Exception):
    """Something the caller can act on: bad input, a bad setting, missing weights."""


class TransferCancelled(FlowMotionError):
    """The caller's `should_cancel` returned True; the transfer stopped before finishing."""
