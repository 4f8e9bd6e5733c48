"""Static analysis on the host: the pre-flight, tamper checks, the pickle walker and the
manifest."""
