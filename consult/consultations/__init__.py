"""Remote consultation between institutions (issue 14): requests, invitations, MDT rooms and
signed opinion reports. ``flow`` is the public surface (the services ``web/`` calls, and their
views). Behind it the rules: ``centres`` (agreements, consult centres), ``request``,
``attachments``, ``invitations``, ``session``, ``reports``, ``report_signing``, ``queries``,
and after the report ``referrals`` (R17) and ``interpretations`` (R18) with ``followup``;
``loading`` what they share, ``views`` what they return. ``machines`` the state machines,
``room`` the MDT room, ``signing`` the practitioners' certificates and the signed report,
``models`` the tables."""
