"""Generated from proto/; run `make proto`."""
