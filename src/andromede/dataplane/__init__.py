"""Data-plane adapters: site backends that store blobs."""
