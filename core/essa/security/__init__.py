"""Trust: mutual TLS between a cluster's processes, roles, and access tokens.

See "Securing a cluster" in the README. The modules, one job each:

- :mod:`~essa.security.certs`: the cluster's CA and per-process certificates (role in the common name);
- :mod:`~essa.security.tokens`: Ed25519-signed access tokens, made and verified;
- :mod:`~essa.security.tls`: a zenoh session's mutual TLS, and warnings for plain TCP;
- :mod:`~essa.security.acl`: zenoh's access control rules, per role (plugins add theirs);
- :mod:`~essa.cluster.authorize`: what a token lets a call or control request do;
- :mod:`~essa.security.settings`: this process's TLS files, token and token key (flags, environment);
- :mod:`~essa.security.local`: a security directory (``essa certs``, ``essa up --secure``);
- :mod:`~essa.cli.security`: ``essa certs`` and ``essa token``.

Only :mod:`~essa.security.certs` and :mod:`~essa.security.tokens` import
``cryptography``, when first used.
"""
