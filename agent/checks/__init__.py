"""Application checks: DNS, HTTP and TCP, each on its own schedule."""
