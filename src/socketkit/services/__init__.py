"""Ready services: each a pure protocol part, a server and a client."""
