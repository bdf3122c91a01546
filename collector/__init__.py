"""kipu-collector: the NOC side of kipu."""
