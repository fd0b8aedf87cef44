"""netmig: move a live-migrating VM's network policies and learned state over NETCONF.

>>> import netmig                                                         # doctest: +SKIP
>>> result = netmig.migrate("vm-web-01", source="host-a1", destination="host-b3", topology="dc.yaml")
>>> result.outcome                                                        # doctest: +SKIP
<Outcome.SUCCESS: 'SUCCESS'>

Failures raise :class:`netmig.errors.NetmigError` subclasses carrying the CLI's exit code.
"""

from netmig.api import migrate
from netmig.check import ConflictPolicy
from netmig.errors import NetmigError
from netmig.feedback import DeviceOutcome, MigrationResult, Outcome
from netmig.model import PolicyKind, VmBundle
from netmig.options import MigrationOptions, Mode
from netmig.settings import CommitPolicy, SshPolicy, Timeouts
from netmig.topology import load_topology, resolve

__all__ = [
    "CommitPolicy",
    "ConflictPolicy",
    "DeviceOutcome",
    "MigrationOptions",
    "MigrationResult",
    "Mode",
    "NetmigError",
    "Outcome",
    "PolicyKind",
    "SshPolicy",
    "Timeouts",
    "VmBundle",
    "__version__",
    "load_topology",
    "migrate",
    "resolve",
]
__version__ = "0.1.0"
