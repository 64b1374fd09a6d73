"""The failure policy every stage follows, as one exception tree and one classifier.

    NewsflowError
    ├── TransientError   retried later (the entry stays pending, is reclaimed after an idle time)
    │                    until the delivery budget is spent; then it goes to the dead letters.
    └── PermanentError   input that can never work: straight to the dead letters with its reason.
        └── UnreadableEntry   the entry itself cannot be decoded into its event.

`is_permanent` decides for any exception, by its mechanism rather than case by case: besides
PermanentError, pydantic's ValidationError (a malformed message), UnicodeError (a text that cannot
be encoded or decoded, an invalid internationalised domain name: idna's IDNAError is one) and a
database's refusal of the data itself (SQLSTATE class 22 "data exception", such as a NUL byte in
a text, and class 54 "program limit exceeded", such as a text too long for a tsvector) fail the
same way however often they are tried. Anything raised while decoding an entry is permanent too
(the stage wraps it in UnreadableEntry): the entry's bytes never change.

Any other exception a handler raises (a bug, a lost connection) is treated as transient: retrying
costs little and the delivery budget bounds it.
"""

from pydantic import ValidationError


class NewsflowError(Exception):
    """Base of every error newsflow raises on purpose."""


class TransientError(NewsflowError):
    """Might work later: a timeout, a 5xx, a store that is briefly down."""


class PermanentError(NewsflowError):
    """Will never work: bad input, a refused address, a page over the size cap."""


class UnreadableEntry(PermanentError):
    """A stream entry that cannot be decoded into its event, whatever went wrong inside the
    decoding (its cause is chained): retrying reads the same bytes again."""


# SQLSTATE classes that describe the data, not the server's state (PostgreSQL appendix A).
_PERMANENT_SQLSTATE_CLASSES = ("22", "54")


def is_permanent(exc: BaseException) -> bool:
    """Whether trying again can never make a difference (see the module docstring)."""
    if isinstance(exc, TransientError):
        return False
    if isinstance(exc, PermanentError | ValidationError | UnicodeError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_PERMANENT_SQLSTATE_CLASSES)
