"""User-facing errors. The CLI prints these as one line, without a traceback."""


class FaceAttrError(Exception):
    """A problem the user can fix: a missing file, a malformed table, a bad bundle."""


class DataError(FaceAttrError, ValueError):
    """An input file or table is missing or malformed. The message names the file (and line)."""


class BundleError(FaceAttrError, ValueError):
    """A model bundle is missing a file, has a wrong shape, or was written by another format."""


class RecipeError(FaceAttrError, ValueError):
    """A training recipe (``--recipe``) holds a value the code cannot use; the message names
    the key."""
