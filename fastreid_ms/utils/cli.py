"""Running a command-line tool's ``main``: a user's mistake (missing file, bad value, config
typo) ends in one ``<tool>: error: <message>`` line on stderr and exit status 2, not a
traceback."""
import sys

__all__ = ["USER_ERRORS", "run_cli"]

# Exceptions that report a problem with the user's input rather than a bug.
USER_ERRORS = (KeyError, OSError, ValueError, RuntimeError)


def run_cli(main, prog, errors=USER_ERRORS, argv=None):
    """Call ``main(argv)`` (``main()`` when ``argv`` is None) and return the exit status:
    ``main``'s own int status, else 0; 2 after printing ``<prog>: error: <message>`` for any
    of ``errors``."""
    try:
        status = main() if argv is None else main(argv)
    except errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0
