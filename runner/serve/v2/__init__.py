"""The Open Inference Protocol (KServe v2): gRPC and HTTP/REST fronts over a Backend."""
