"""The errors portraitcolor reports to people: one base class, caught in one place (cli.run_job).

A PortraitcolorError's message is one line for the user (the file and the reason); a
UsageError means the command line asked for something impossible (exit status 2, as click's
own usage errors), any other a job that failed (exit status 1).
"""


class PortraitcolorError(Exception):
    """A problem with a one-line message for the user."""


class UsageError(PortraitcolorError):
    """The options ask for something that cannot be: the command line is wrong, not the job."""


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (libraries' messages can run to pages)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
