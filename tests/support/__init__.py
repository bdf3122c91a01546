"""Test support: real-ICMP test beds built from Linux network namespaces."""
