"""Chat: an IRC-compatible server (RFC 1459/2812 with IRCv3 basics) and a terminal client.

Pure protocol logic (``numerics``, ``state``, ``session``, ``modes``, ``replies``,
``commands``) takes the server state, one message and the time, and returns what to
send and what to store; ``server`` is the glue to sockets and SQLite, ``client`` the
terminal client.
"""
