"""Trust: mutual TLS, roles, access tokens (see the README, "Securing a cluster")."""
