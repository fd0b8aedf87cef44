"""Codec lookup by name: the built-in codecs plus third-party ones from the ``netmig.codecs`` entry points."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from netmig.codecs.acme import AcmeCodec
from netmig.codecs.base import DeviceCodec
from netmig.codecs.ietf import IetfCodec
from netmig.errors import InputError

__all__ = ["ENTRY_POINT_GROUP", "available", "get_codec"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "netmig.codecs"
_BUILTIN: dict[str, type[DeviceCodec]] = {"ietf": IetfCodec, "acme": AcmeCodec}


def available() -> tuple[str, ...]:
    """Names of every codec: built-in and installed through entry points, sorted."""
    return tuple(sorted(set(_BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))


def get_codec(name: str) -> DeviceCodec:
    """A new codec object for ``name``; raises InputError for an unknown name or a broken plugin."""
    if name in _BUILTIN:
        return _BUILTIN[name]()
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            factory = ep.load()
            codec = factory()
        except Exception as exc:  # a third-party plugin failing to load is the user's input problem
            raise InputError(f"codec {name!r} from {ep.value} failed to load: {exc}") from exc
        if not isinstance(codec, DeviceCodec):
            raise InputError(f"codec {name!r} from {ep.value} does not implement DeviceCodec")
        log.debug("loaded codec %s from %s", name, ep.value)
        return codec
    raise InputError(f"unknown codec {name!r} (available: {', '.join(available())})")
