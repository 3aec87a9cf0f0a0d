"""Shared authentication for the exec and file services.

- ``handshake``: challenge-response with HMAC-SHA256 over fresh nonces from both sides
  (pure: no I/O, no clock);
- ``throttle``: failed attempts slow down per address (pure: time comes in as ``now``);
- ``token``: the server token file (created on first start, mode 0600) and where
  clients find it (``SOCKETKIT_TOKEN`` or ``--token-file``).
"""
