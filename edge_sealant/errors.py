"""The one exception type users see; the CLI prints it as a single line and exits 1."""


class EdgeSealantError(Exception):
    """A problem the user can fix (bad input, missing file, impossible option).

    The message must be one line that names the file (and line) at fault where there is one.
    """
