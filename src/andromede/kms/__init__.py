"""Key managers: where tenant key-encryption keys (KEKs) live and where data keys are wrapped.

``builtin`` seals KEKs under a master key in local files (the zero-setup default); ``pkcs11``
keeps them on an HSM token; ``kmip`` on a KMIP server. ``factory.open_key_managers`` builds
the configured set; each one implements ``andromede.ports.KeyManager``.
"""
