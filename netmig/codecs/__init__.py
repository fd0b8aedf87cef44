"""Decode/encode edge: device-native XML <-> the canonical VmBundle."""

from __future__ import annotations

from netmig.codecs.acme import AcmeCodec
from netmig.codecs.base import (
    Binding,
    DeviceCodec,
    DeviceInventory,
    LbUse,
    NatMapping,
    PortUse,
    VmContext,
    bundle_from_xml,
    bundle_to_xml,
)
from netmig.codecs.ietf import IetfCodec
from netmig.codecs.registry import available, get_codec

__all__ = [
    "AcmeCodec",
    "Binding",
    "DeviceCodec",
    "DeviceInventory",
    "IetfCodec",
    "LbUse",
    "NatMapping",
    "PortUse",
    "VmContext",
    "available",
    "bundle_from_xml",
    "bundle_to_xml",
    "get_codec",
]
