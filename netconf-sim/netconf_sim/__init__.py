"""netconf-sim: a fabric of simulated NETCONF devices over SSH in one asyncio process."""

__all__ = ["__version__"]
__version__ = "0.1.0"
