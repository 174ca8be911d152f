"""The route modules; importing this package registers every route in ``registry.api``."""

from . import (  # noqa: F401
    accounts,
    audit,
    chat,
    consultations,
    followups,
    identity,
    imaging,
    media,
    meta,
    organisation,
    patients,
    practitioners,
    providers,
    ratings,
    recordings,
    schedule,
    sessions,
    visits,
    words,
)
