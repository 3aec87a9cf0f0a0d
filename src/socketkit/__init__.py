"""socketkit: TCP/UDP services done right.

The package root is light on purpose: it re-exports the exception tree and the
version. Import the layer you use:

- ``socketkit.codec``: sans-IO codecs (lines, wire format v1);
- ``socketkit.server``: a drop-in ``socketserver``;
- ``socketkit.testing``: loopback helpers and the decoder conformance check.
"""

from socketkit._version import __version__
from socketkit.errors import (
    BrokenResourceError,
    ClosedResourceError,
    FrameTooLarge,
    HandshakeError,
    IncompleteFrame,
    LocalProtocolError,
    PathOutsideRoot,
    PermissionDenied,
    ProtocolError,
    RemoteProtocolError,
    ResourceError,
    ServiceError,
    SocketkitError,
)

__all__ = [
    "BrokenResourceError",
    "ClosedResourceError",
    "FrameTooLarge",
    "HandshakeError",
    "IncompleteFrame",
    "LocalProtocolError",
    "PathOutsideRoot",
    "PermissionDenied",
    "ProtocolError",
    "RemoteProtocolError",
    "ResourceError",
    "ServiceError",
    "SocketkitError",
    "__version__",
]
