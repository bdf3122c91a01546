"""Probes: async functions that measure something and return frozen results."""
