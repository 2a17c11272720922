"""The streaming runtime: backends, buffering, sessions, batching, server and clients."""
