"""Serving a model over the Open Inference Protocol (KServe v2), gRPC and HTTP."""
