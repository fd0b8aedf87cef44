"""netmig: move a live-migrating VM's network policies and learned state over NETCONF."""

from netmig.errors import NetmigError

__all__ = ["NetmigError", "__version__"]
__version__ = "0.1.0"
