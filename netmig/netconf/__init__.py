"""NETCONF client layer: capabilities, the ncclient transport with its fixes, and typed device sessions."""

from __future__ import annotations

from netmig.netconf.capabilities import Capabilities, ModuleInfo
from netmig.netconf.session import DeviceSession, subtree_filter, xpath_filter

__all__ = ["Capabilities", "DeviceSession", "ModuleInfo", "subtree_filter", "xpath_filter"]
