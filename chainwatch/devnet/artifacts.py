"""Compiled contracts as the devnet deploys them: Hardhat artifacts (Aave v3 ships them) and library linking.

Linking follows the artifacts' own `linkReferences` (byte offsets of each placeholder) and checks that each
offset really holds the placeholder solc writes, so a mismatched artifact fails loudly instead of deploying
bytecode that calls a garbage address.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import eth_abi
import msgspec
from eth_utils import keccak


class LinkOffset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start: int
    length: int


class Artifact(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One contract's ABI and bytecode; `link_references` maps source path -> library name -> offsets."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    link_references: dict[str, dict[str, list[LinkOffset]]] = {}

    def libraries(self) -> list[str]:
        """Fully qualified names (`path:Name`) of the libraries this creation code must be linked with."""
        return [f"{source}:{name}" for source, names in self.link_references.items() for name in names]

    def calldata(self, function: str, *args: Any) -> str:
        """The ABI-encoded call; `function` is a name, or a signature such as `mint(address,uint256)`."""
        selector, types = _function(self, function)
        return "0x" + selector + eth_abi.encode(types, args).hex()

    def creation_code(self, *args: Any, linked: str | None = None) -> str:
        """Creation code (`linked` when the artifact needs libraries) followed by the constructor arguments."""
        constructor = next((item for item in self.abi if item["type"] == "constructor"), {"inputs": []})
        types = [_abi_type(param) for param in constructor["inputs"]]
        return (linked or self.bytecode) + eth_abi.encode(types, args).hex()


class _HardhatArtifact(msgspec.Struct, frozen=True, kw_only=True):
    """The fields the devnet reads; Hardhat's others (`_format`, `sourceName`) are ignored on purpose."""

    contractName: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployedBytecode: str
    linkReferences: dict[str, dict[str, list[LinkOffset]]]


class UnlinkedLibrary(Exception):
    """Creation code needs a library whose address was not given, or its placeholder is not where expected."""


def library_placeholder(qualified_name: str) -> str:
    """solc's placeholder for a library: `__$` + 34 hex chars of keccak256(`path:Name`) + `$__` (40 chars)."""
    return "__$" + keccak(text=qualified_name).hex()[:34] + "$__"


def link_bytecode(artifact: Artifact, addresses: Mapping[str, str]) -> str:
    """The artifact's creation code with every library placeholder replaced by `addresses[path:Name]`."""
    code = artifact.bytecode.removeprefix("0x")
    for source, names in artifact.link_references.items():
        for name, offsets in names.items():
            qualified = f"{source}:{name}"
            if qualified not in addresses:
                raise UnlinkedLibrary(f"{artifact.name} needs library {qualified}, no address given")
            address = addresses[qualified].removeprefix("0x").lower()
            placeholder = library_placeholder(qualified)
            for offset in offsets:
                start, end = 2 * offset.start, 2 * (offset.start + offset.length)
                if code[start:end] != placeholder:
                    raise UnlinkedLibrary(
                        f"{artifact.name}: expected placeholder of {qualified} at byte {offset.start}, "
                        f"found {code[start:end]!r}"
                    )
                code = code[:start] + address + code[end:]
    return "0x" + code


def load_hardhat_artifact(path: Path) -> Artifact:
    """One contract from a Hardhat artifact JSON file (as shipped in `@aave/core-v3/artifacts`)."""
    raw = _HARDHAT.decode(path.read_bytes())
    return Artifact(
        name=raw.contractName,
        abi=raw.abi,
        bytecode=raw.bytecode,
        deployed_bytecode=raw.deployedBytecode,
        link_references=raw.linkReferences,
    )


def _function(artifact: Artifact, function: str) -> tuple[str, list[str]]:
    """Selector (hex) and input types of one function, looked up once per artifact and name.

    web3's own encoder re-validates the whole ABI on every call (about 2 ms for Pool), which dominated the
    time to open the benchmark's thousands of positions.
    """
    key = (artifact.name, function)
    if key not in _FUNCTIONS:
        matches = []
        for item in artifact.abi:
            if item["type"] != "function":
                continue
            types = [_abi_type(param) for param in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            if function in (item["name"], signature):
                matches.append((keccak(text=signature)[:4].hex(), types))
        if len(matches) != 1:
            raise KeyError(f"{artifact.name} has {len(matches)} functions matching {function!r}")
        _FUNCTIONS[key] = matches[0]
    return _FUNCTIONS[key]


def _abi_type(param: dict[str, Any]) -> str:
    """The canonical type of an ABI parameter; structs become tuples, keeping any array suffix."""
    kind: str = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind.removeprefix("tuple")
    return kind


_HARDHAT: Final = msgspec.json.Decoder(_HardhatArtifact)
# Keyed by contract name, which is unique among the devnet's artifacts (Aave's and the project's own).
_FUNCTIONS: dict[tuple[str, str], tuple[str, list[str]]] = {}
