"""The worker's pieces the host uses too: the wire format (generated protobuf code, tensors, data-
plane frames) and format detection. They import nothing host-only.
"""
