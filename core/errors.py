"""User errors: problems the user can fix, told apart from bugs.

The CLI prints a ``FunnelError`` as one line (``error: <message>``) and any other exception as
a bug in funnel, with its traceback. Raise one where the user caused the condition (bad data, a
bad file, a bad option, a step not run yet) and say in the message what to do about it.
"""

from __future__ import annotations


class FunnelError(Exception):
    """A problem the user can fix; its message says how."""


class InputError(FunnelError, ValueError):
    """Data, a file or an option the user gave cannot be used; the message names it."""


class MissingInputError(FunnelError, FileNotFoundError):
    """A file or table a step needs does not exist; the message names the step that makes it."""


class UnknownNameError(FunnelError, KeyError):
    """A name the user gave (an audience, an offer, a feature in a rule) is not declared."""

    def __str__(self) -> str:
        # KeyError shows its argument's repr (quoted); this message is meant to be read
        return str(self.args[0]) if self.args else ""
