"""The public plugin surface (filled in below)."""
