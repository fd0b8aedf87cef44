"""RFC 6241 rpc-error as a Python exception, and constructors for the tags the simulator raises."""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from .xml import NC_NS, Element, qname

__all__ = ["NsMap", "SimRpcError"]

NsMap = Mapping[str, str] | None


class SimRpcError(Exception):
    """One RFC 6241 section 4.3 rpc-error; ``to_element()`` renders it for an rpc-reply."""

    def __init__(self, error_type: str, tag: str, *, severity: str = "error", app_tag: str | None = None,
                 path: str | None = None, message: str | None = None,
                 info: Mapping[str, str] | None = None, path_nsmap: Mapping[str, str] | None = None) -> None:
        self.error_type = error_type
        self.tag = tag
        self.severity = severity
        self.app_tag = app_tag
        self.path = path
        self.message = message
        self.info: dict[str, str] = dict(info or {})
        self.path_nsmap: dict[str, str] = dict(path_nsmap or {})
        self.errors: list[SimRpcError] = [self]
        """Every error of the RPC, this one first (continue-on-error and validation report several)."""
        text = f"{error_type}/{tag}"
        if path:
            text += f" at {path}"
        if message:
            text += f": {message}"
        super().__init__(text)

    @classmethod
    def combine(cls, errors: list[SimRpcError]) -> SimRpcError:
        """The first error, carrying all of ``errors`` in ``.errors``."""
        first = errors[0]
        first.errors = list(errors)
        return first

    def to_elements(self) -> list[Element]:
        """One ``<rpc-error>`` per error in ``.errors``."""
        return [e.to_element() for e in self.errors]

    def to_element(self) -> Element:
        """The ``<rpc-error>`` element (base namespace) with every field that is set."""
        nsmap: dict[str | None, str] = {None: NC_NS}
        for prefix, ns in self.path_nsmap.items():
            if prefix and prefix not in nsmap:
                nsmap[prefix] = ns
        err = etree.Element(qname(NC_NS, "rpc-error"), nsmap=nsmap)
        etree.SubElement(err, qname(NC_NS, "error-type")).text = self.error_type
        etree.SubElement(err, qname(NC_NS, "error-tag")).text = self.tag
        etree.SubElement(err, qname(NC_NS, "error-severity")).text = self.severity
        if self.app_tag:
            etree.SubElement(err, qname(NC_NS, "error-app-tag")).text = self.app_tag
        if self.path:
            etree.SubElement(err, qname(NC_NS, "error-path")).text = self.path
        if self.message:
            msg = etree.SubElement(err, qname(NC_NS, "error-message"))
            msg.text = self.message
            msg.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        if self.info:
            info = etree.SubElement(err, qname(NC_NS, "error-info"))
            for key, value in self.info.items():
                etree.SubElement(info, qname(NC_NS, key)).text = value
        return err

    # -- constructors, one per tag the engine uses -------------------------------------------------
    @classmethod
    def invalid_value(cls, message: str, *, path: str | None = None, error_type: str = "application",
                      app_tag: str | None = None, path_nsmap: NsMap = None) -> SimRpcError:
        return cls(error_type, "invalid-value", message=message, path=path, app_tag=app_tag,
                   path_nsmap=path_nsmap)

    @classmethod
    def missing_element(cls, name: str, *, path: str | None = None, error_type: str = "application",
                        message: str | None = None, path_nsmap: NsMap = None) -> SimRpcError:
        return cls(error_type, "missing-element", path=path, info={"bad-element": name},
                   message=message or f"missing element {name}", path_nsmap=path_nsmap)

    @classmethod
    def unknown_element(cls, name: str, *, path: str | None = None, error_type: str = "application",
                        path_nsmap: NsMap = None) -> SimRpcError:
        return cls(error_type, "unknown-element", path=path, info={"bad-element": name},
                   message=f"unknown element {name}", path_nsmap=path_nsmap)

    @classmethod
    def unknown_namespace(cls, name: str, namespace: str, *, path: str | None = None,
                          path_nsmap: NsMap = None) -> SimRpcError:
        return cls("application", "unknown-namespace", path=path,
                   info={"bad-element": name, "bad-namespace": namespace},
                   message=f"unknown namespace {namespace}", path_nsmap=path_nsmap)

    @classmethod
    def bad_attribute(cls, attribute: str, element: str, *, message: str | None = None,
                      path: str | None = None, path_nsmap: NsMap = None) -> SimRpcError:
        return cls("protocol", "bad-attribute", path=path,
                   info={"bad-attribute": attribute, "bad-element": element},
                   message=message or f"bad attribute {attribute}", path_nsmap=path_nsmap)

    @classmethod
    def data_exists(cls, *, path: str | None = None, path_nsmap: NsMap = None) -> SimRpcError:
        return cls("application", "data-exists", path=path, message="data already exists",
                   path_nsmap=path_nsmap)

    @classmethod
    def data_missing(cls, *, path: str | None = None, message: str = "data does not exist",
                     app_tag: str | None = None, path_nsmap: NsMap = None) -> SimRpcError:
        return cls("application", "data-missing", path=path, message=message, app_tag=app_tag,
                   path_nsmap=path_nsmap)

    @classmethod
    def operation_not_supported(cls, message: str, *, error_type: str = "protocol") -> SimRpcError:
        return cls(error_type, "operation-not-supported", message=message)

    @classmethod
    def operation_failed(cls, message: str, *, path: str | None = None, app_tag: str | None = None,
                         error_type: str = "application", path_nsmap: NsMap = None) -> SimRpcError:
        return cls(error_type, "operation-failed", path=path, message=message, app_tag=app_tag,
                   path_nsmap=path_nsmap)

    @classmethod
    def invalid_parameter(cls, message: str) -> SimRpcError:
        """A bad RPC parameter (unknown datastore, bad enum in the request): invalid-value/protocol."""
        return cls("protocol", "invalid-value", message=message)
