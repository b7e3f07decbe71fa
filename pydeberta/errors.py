"""The exceptions pydeberta raises of its own (everything else is a built-in ``TypeError``,
``ValueError``, ``OSError`` ... whose message names the argument)."""


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read: truncated, corrupt, or not what was expected."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle names a global that a state dict of tensors does not need; nothing was run."""
