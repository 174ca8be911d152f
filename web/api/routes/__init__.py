"""The route modules; importing this package registers every route in ``registry.api``."""

from . import (  # noqa: F401
    accounts,
    audit,
    chat,
    consultations,
    imaging,
    meta,
    organisation,
    patients,
    practitioners,
    recordings,
    schedule,
    sessions,
    visits,
    words,
)
