"""State: lattice types and merges, their bincode encoding, the store interface, the in-memory store,
the readable and JSON views of values, the bincode codec of function arguments."""
