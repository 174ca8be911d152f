"""Remote consultation between institutions (issue 14): requests, invitations, MDT rooms and
signed opinion reports. ``flow`` holds the services, ``machines`` the state machines,
``signing`` the practitioners' certificates and the signed report, ``models`` the tables."""
