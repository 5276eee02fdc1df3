"""Plain functions with explicit arguments: the domain. No Authlib, no request parsing."""
