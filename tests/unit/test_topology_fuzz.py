"""Whatever the input, parse_topology returns a Topology or raises TopologyError: never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmig.errors import TopologyError
from netmig.topology import Topology, parse_topology

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-site" / "topology.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
EXAMPLE_DATA = yaml.safe_load(EXAMPLE_TEXT)

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = st.sampled_from(
    [
        "devices",
        "hosts",
        "sites",
        "vms",
        "mapping",
        "from",
        "to",
        "partners",
        "a-leaf1",
        "b-leaf1",
        "A",
        "B",
        "port",
        "role",
        "site",
        "bridge",
        "kinds",
        "vlans",
        "password",
        "ssh-agent",
        "upper",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    NAMES,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(NAMES, SCALARS), inner, max_size=4)
    ),
    max_leaves=25,
)


def _check(text: str) -> None:
    try:
        result = parse_topology(text, file="fuzz.yaml")
    except TopologyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml"
            assert problem.line is None or problem.line >= 1
    else:
        assert isinstance(result, Topology)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list(" \n\t:-[]{}#&*!|>'\"%@`,?abcz019.")), max_size=200))
def test_yaml_ish_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.text(max_size=120))
def test_arbitrary_text(text: str) -> None:
    _check(text)


@FUZZ
@given(VALUES)
def test_random_structures(value: Any) -> None:
    _check(yaml.safe_dump(value, allow_unicode=True))


def _mutate(data: Any, path: list[Any], value: Any) -> Any:
    """Replace the node reached by following ``path`` (indices wrap) with ``value``."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    if isinstance(data, dict):
        keys = list(data)
        key = keys[path[0] % len(keys)]
        return {**data, key: _mutate(data[key], path[1:], value)}
    index = path[0] % len(data)
    return [*data[:index], _mutate(data[index], path[1:], value), *data[index + 1 :]]


@FUZZ
@given(st.lists(st.integers(0, 20), min_size=1, max_size=7), VALUES)
def test_mutated_example(path: list[int], value: Any) -> None:
    _check(yaml.safe_dump(_mutate(EXAMPLE_DATA, path, value), allow_unicode=True))


@FUZZ
@given(st.integers(0, len(EXAMPLE_TEXT)), st.integers(0, 40), st.text(max_size=6))
def test_spliced_example_text(at: int, cut: int, insert: str) -> None:
    _check(EXAMPLE_TEXT[:at] + insert + EXAMPLE_TEXT[at + cut :])


def test_deep_nesting_and_aliases() -> None:
    try:
        parse_topology("[" * 1200 + "]" * 1200, file="deep.yaml")
    except TopologyError as exc:
        assert "nested too deeply" in str(exc)
    _check("devices: &d {a: *d}\n")
    _check("a: &x [1, 2]\nb: *x\nc: *nope\n")
    _check("\x00\x01devices: {}")
