"""The one exception base the CLI turns into a single ``error:`` line (no traceback).

Every error a user can fix (bad checkpoint, missing TSV, bad option) derives from :class:`UserFacingError`.
This module imports nothing heavy, so the CLI can catch these errors without importing torch or vlmeval.
"""


class UserFacingError(Exception):
    """An error with a one-line message that names the file and the fix."""
