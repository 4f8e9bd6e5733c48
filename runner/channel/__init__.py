"""The channel to the worker: the gRPC client and the Unix-socket data plane."""
