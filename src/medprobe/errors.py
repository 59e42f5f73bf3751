"""Errors that medprobe reports to the user as one sentence (CLI exit code 2)."""


class MedprobeError(Exception):
    """A problem with the user's input or environment, explained in one sentence.

    The CLI prints the message without a traceback and exits with code 2.
    """


class BadImageError(MedprobeError):
    """One record could not be turned into an image; the run skips it and records why."""
