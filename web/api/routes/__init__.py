"""The route modules; importing this package registers every route in ``registry.api``."""

from . import (  # noqa: F401
    accounts,
    audit,
    chat,
    imaging,
    meta,
    organisation,
    patients,
    practitioners,
    providers,
    recordings,
    schedule,
    sessions,
    visits,
    words,
)
