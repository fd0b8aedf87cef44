"""The YANG modules in yang/ pass pyang --strict --lint, yanglint and netconfd, and sample data validates."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
YANG_DIR = ROOT / "yang"
DATA_DIR = ROOT / "tests" / "data" / "yang"
MODULES = sorted(YANG_DIR.glob("*.yang"))
OURS = ("netmig-vm-bundle", "netmig-device", "netmig-migration", "acme-fabric")
REVISION = "2026-11-24"


def _pyang_modules_dir() -> Path:
    """pyang's installed module tree (<prefix>/share/yang/modules), holding ietf/ and iana/."""
    import pyang

    candidates = [
        Path(sysconfig.get_path("data")) / "share" / "yang" / "modules",
        Path(sys.prefix) / "share" / "yang" / "modules",
        *(parent / "share" / "yang" / "modules" for parent in Path(pyang.__file__).resolve().parents),
    ]
    for candidate in candidates:
        if (candidate / "ietf" / "ietf-interfaces.yang").is_file():
            return candidate
    raise AssertionError(f"pyang's IETF modules not found; looked in {[str(c) for c in candidates]}")


MODS = _pyang_modules_dir()
SEARCH_PATH = [MODS / "ietf", MODS / "iana", YANG_DIR]


def _tool(name: str) -> str:
    """Path of a system tool; a skip locally, a failure under CI=true (a skip is not a pass there)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: scripts/test.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd, env=env, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _yanglint_path_args() -> list[str]:
    return [arg for path in SEARCH_PATH for arg in ("-p", str(path))]


def test_all_our_modules_present() -> None:
    names = {module.stem for module in MODULES}
    assert set(OURS) <= names


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.stem)
def test_pyang_strict_lint_is_clean(module: Path) -> None:
    path = ":".join(str(p) for p in SEARCH_PATH)
    rc, out = _run([sys.executable, "-m", "pyang", "--strict", "--lint", "-p", path, str(module)])
    assert (rc, out) == (0, "")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.stem)
def test_yanglint_loads_without_warnings(module: Path) -> None:
    rc, out = _run([_tool("yanglint"), *_yanglint_path_args(), str(module)])
    assert (rc, out) == (0, "")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.stem)
def test_module_header(module: Path) -> None:
    text = module.read_text(encoding="utf-8")
    name = re.search(r"^module\s+([\w-]+)\s*\{", text, re.MULTILINE)
    assert name is not None and name.group(1) == module.stem
    namespace = re.search(r'^\s*namespace\s+"([^"]+)";', text, re.MULTILINE)
    expected = "urn:acme:yang:" if module.stem.startswith("acme-") else "urn:netmig:yang:"
    assert namespace is not None and namespace.group(1) == expected + module.stem
    for statement in ("organization", "contact", "description"):
        assert re.search(rf"^\s*{statement}\b", text, re.MULTILINE), statement
    assert re.search(rf"^\s*revision\s+{REVISION}\s*\{{", text, re.MULTILINE)


def test_acme_fabric_imports_only_netconfd_loadable_types() -> None:
    text = (YANG_DIR / "acme-fabric.yang").read_text(encoding="utf-8")
    imports = set(re.findall(r"^\s*import\s+([\w-]+)", text, re.MULTILINE))
    assert imports == {"ietf-inet-types", "ietf-yang-types"}


@pytest.mark.parametrize("name", OURS)
def test_netconfd_loads_module(name: str, tmp_path: Path) -> None:
    netconfd = _tool("netconfd")
    (tmp_path / "data").mkdir()
    modpath = ":".join(str(p) for p in SEARCH_PATH)
    env = {**os.environ, "HOME": str(tmp_path)}
    rc, out = _run(
        [
            netconfd,
            "--validate-config-only",
            f"--yuma-home={tmp_path}",
            f"--modpath={modpath}",
            f"--module={YANG_DIR / (name + '.yang')}",
            "--no-startup",
        ],
        cwd=tmp_path,
        env=env,
    )
    problems = [
        line
        for line in out.splitlines()
        if re.search(r"error|warning", line, re.IGNORECASE) and "SIL code for module" not in line
    ]
    assert (rc, problems) == (0, [])


# (yang modules, yanglint -F feature args, data type, sample file, expected error or None if valid)
DEVICE_MODS = ["netmig-device.yang", str(MODS / "iana" / "iana-if-type.yang")]
ALL_DEVICE_FEATURES = ["-F", "ietf-interfaces:", "-F", "netmig-device:*"]
SAMPLES = [
    (DEVICE_MODS, ALL_DEVICE_FEATURES, "data", "netmig-device-good.xml", None),
    (
        DEVICE_MODS,
        ALL_DEVICE_FEATURES,
        "data",
        "netmig-device-bad-vlan.xml",
        '"4095" is out of the allowed range',
    ),
    # A profile without nd-seeding cannot hold seeded ND entries.
    (
        DEVICE_MODS,
        ["-F", "ietf-interfaces:", "-F", "netmig-device:firewall,load-balancer,nat"],
        "data",
        "netmig-device-good.xml",
        'Node "nd-entry" not found',
    ),
    (["acme-fabric.yang"], [], "data", "acme-fabric-good.xml", None),
    (["acme-fabric.yang"], [], "data", "acme-fabric-bad-vlan.xml", '"5000" is out of the allowed range'),
    (["netmig-vm-bundle.yang"], [], "data", "netmig-vm-bundle-good.xml", None),
    (
        ["netmig-vm-bundle.yang"],
        [],
        "data",
        "netmig-vm-bundle-bad-port-range.xml",
        "destination-port-max needs a destination-port-min not above it",
    ),
    (["netmig-migration.yang"], [], "rpc", "netmig-migration-vdp-associate-good.xml", None),
    (
        ["netmig-migration.yang"],
        [],
        "rpc",
        "netmig-migration-vdp-associate-bad-bits.xml",
        "s-bit and m-bit are mutually exclusive",
    ),
]


@pytest.mark.parametrize(
    ("modules", "features", "data_type", "sample", "error"), SAMPLES, ids=[s[3] + str(s[2]) for s in SAMPLES]
)
def test_sample_instance(
    modules: list[str], features: list[str], data_type: str, sample: str, error: str | None
) -> None:
    files = [str(YANG_DIR / m) if not Path(m).is_absolute() else m for m in modules]
    args = [*_yanglint_path_args(), *features, "-t", data_type, *files, str(DATA_DIR / sample)]
    rc, out = _run([_tool("yanglint"), *args])
    if error is None:
        assert (rc, out) == (0, "")
    else:
        assert rc != 0
        assert error in out


@pytest.mark.parametrize(
    ("dport", "valid"),
    [
        ("80", True),
        ("0", True),
        ("65535", True),
        ("1000-2000", True),
        ("65536", False),
        ("080", False),
        ("80-", False),
        ("-80", False),
        ("80-90-100", False),
    ],
)
def test_acme_dport_pattern(dport: str, valid: bool, tmp_path: Path) -> None:
    good = (DATA_DIR / "acme-fabric-good.xml").read_text(encoding="utf-8")
    assert "<dport>1000-2000</dport>" in good
    sample = tmp_path / "dport.xml"
    sample.write_text(good.replace("<dport>1000-2000</dport>", f"<dport>{dport}</dport>"), encoding="utf-8")
    args = [*_yanglint_path_args(), str(YANG_DIR / "acme-fabric.yang"), str(sample)]
    rc, out = _run([_tool("yanglint"), *args])
    assert (rc == 0) is valid, out
