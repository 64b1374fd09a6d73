"""The failure policy every stage follows, as one exception tree.

    NewsflowError
    ├── TransientError   retried later (the entry stays pending, is reclaimed after an idle time)
    │                    until the delivery budget is spent; then it goes to the dead letters.
    └── PermanentError   input that can never work: straight to the dead letters with its reason.

Any other exception a handler raises (a bug, a lost connection) is treated as transient: retrying
costs little and the delivery budget bounds it. Pydantic's ValidationError (a malformed or
unreadable message) is permanent.
"""


class NewsflowError(Exception):
    """Base of every error newsflow raises on purpose."""


class TransientError(NewsflowError):
    """Might work later: a timeout, a 5xx, a store that is briefly down."""


class PermanentError(NewsflowError):
    """Will never work: bad input, a refused address, a page over the size cap."""
