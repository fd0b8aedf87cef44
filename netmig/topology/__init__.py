"""Topology: which devices hold a VM's policies, and where they go when it moves.

``load_topology(path)`` reads and validates a topology file against the YANG module
``netmig-topology``; ``resolve(topology, vm, from_host, to_host)`` turns it into a MigrationPlan.
"""

from __future__ import annotations

from netmig.topology.load import load_topology, parse_topology
from netmig.topology.model import (
    Codec,
    Credentials,
    Device,
    Host,
    PartnerRule,
    PolicyKind,
    QuirkProfile,
    Role,
    Site,
    SiteMapping,
    Topology,
    VmHint,
    resolve_password,
)
from netmig.topology.resolve import Attachment, MigrationPlan, resolve

__all__ = [
    "Attachment",
    "Codec",
    "Credentials",
    "Device",
    "Host",
    "MigrationPlan",
    "PartnerRule",
    "PolicyKind",
    "QuirkProfile",
    "Role",
    "Site",
    "SiteMapping",
    "Topology",
    "VmHint",
    "load_topology",
    "parse_topology",
    "resolve",
    "resolve_password",
]
