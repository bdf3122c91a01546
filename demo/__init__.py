"""The demo: a simulated regional project watched by a real NOC, and the link emulation
(network namespaces and an ICMP echo responder) the demo and the tests share."""
