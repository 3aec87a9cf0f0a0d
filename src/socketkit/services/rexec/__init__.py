"""Remote exec: authenticated command execution that behaves like ``ssh host cmd``."""
