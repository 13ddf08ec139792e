"""Ports: the protocols through which services reach the outside world.

Adapters implement them (``metadata/``, ``dataplane/``, ``kms/``, ``crypto/``, ``audit/``);
services depend only on these. One module per side: ``store`` (metadata and the clock),
``data`` (sites and blob writers), ``crypto`` (key managers and envelopes), ``audit`` (the
trail); every name is imported from here.
"""

from andromede.ports.audit import AuditReader, AuditSink
from andromede.ports.crypto import Envelope, KeyManager, PieceOpener
from andromede.ports.data import BlobWriter, PendingBlock, ShardedFactory, ShardSet, SiteBackend
from andromede.ports.store import Clock, FullStore, LeaseStore, MetadataStore, PlacementStore

__all__ = [
    "AuditReader",
    "AuditSink",
    "BlobWriter",
    "Clock",
    "Envelope",
    "FullStore",
    "KeyManager",
    "LeaseStore",
    "MetadataStore",
    "PendingBlock",
    "PieceOpener",
    "PlacementStore",
    "ShardSet",
    "ShardedFactory",
    "SiteBackend",
]
