"""Typed domain of netmig: the canonical per-VM bundle (netmig-vm-bundle), no XML."""

from __future__ import annotations

from netmig.model.bundle import (
    DynamicInfo,
    PolicyKind,
    StaticPolicies,
    VmBundle,
    VmIdentity,
    from_dict,
    merge,
    to_dict,
)
from netmig.model.dynamic import (
    ArpEntry,
    DhcpBinding,
    FirewallSession,
    MacEntry,
    NatSession,
    NdEntry,
    SessionProtocol,
    SessionState,
)
from netmig.model.policy import (
    Acl,
    AclRule,
    Action,
    Direction,
    FirewallRule,
    LbMember,
    NatStatic,
    PortProfile,
    Protocol,
    QosProfile,
)

__all__ = [
    "Acl",
    "AclRule",
    "Action",
    "ArpEntry",
    "DhcpBinding",
    "Direction",
    "DynamicInfo",
    "FirewallRule",
    "FirewallSession",
    "LbMember",
    "MacEntry",
    "NatSession",
    "NatStatic",
    "NdEntry",
    "PolicyKind",
    "PortProfile",
    "Protocol",
    "QosProfile",
    "SessionProtocol",
    "SessionState",
    "StaticPolicies",
    "VmBundle",
    "VmIdentity",
    "from_dict",
    "merge",
    "to_dict",
]
