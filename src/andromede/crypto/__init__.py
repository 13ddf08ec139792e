"""Cryptography adapters: sealing blobs at rest with AES-256-GCM."""
