"""Echo (RFC 862): every byte or datagram comes back unchanged; TCP, UDP and Unix."""
