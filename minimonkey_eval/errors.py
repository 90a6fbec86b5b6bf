"""The one exception base the CLI turns into a single ``error:`` line (no traceback).

Every error a user can fix (bad checkpoint, missing TSV, bad option) derives from :class:`UserFacingError`.
This module imports nothing heavy, so the CLI can catch these errors without importing torch or vlmeval.
"""


class UserFacingError(Exception):
    """An error with a one-line message that names the file and the fix."""


class CheckpointError(UserFacingError):
    """The checkpoint directory is missing, incomplete or does not match its config."""


def require_checkpoint_dir(path) -> None:
    """The first check of every checkpoint load, cheap enough to run before torch is imported (``chat`` does)."""
    from pathlib import Path

    if not Path(path).is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found; pass --model-path DIR holding config.json, "
                              "*.safetensors and the tokenizer files")
