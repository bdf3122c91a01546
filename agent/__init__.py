"""kipu-agent: link probing and availability for a rural site."""
