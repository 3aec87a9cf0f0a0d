"""The service runtime: options from flags, environment and file; running services.

- ``flags``: a service's command-line flags, derived from its options declaration;
- ``config``: ``socketkit.toml`` and ``SOCKETKIT_<SERVICE>_<OPTION>``, the precedence
  (flag > environment > file > default) and ``config check``'s findings;
- ``services``: the registry of services (name -> options class and ``build``);
- ``run``: running one or several services on one loop (workers, signals, SIGHUP).
"""
