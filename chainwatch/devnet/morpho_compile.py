"""Compile the real Morpho Blue (npm `@morpho-org/morpho-blue`, sources only) with the project's own devnet
contracts for it, using solc-js 0.8.19 (`Morpho.sol` pins that version) with viaIR as Morpho builds it.

Output is cached under `<project root>/.cache/solc/`, keyed by every source, the settings and the compiler
version: viaIR in solc-js takes seconds, a cached deploy must not.
"""

from __future__ import annotations

from typing import Final

from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.solc import CONTRACTS_DIR, compile_cached, node_package, sources_in

MORPHO_PACKAGE: Final = "@morpho-org/morpho-blue"
SOLC_PACKAGE: Final = "solc0819"
OWN_DIR: Final = CONTRACTS_DIR / "morpho"
# Source unit name -> contract: the real Morpho under the package's own import path, ours under chainwatch/.
CONTRACTS: Final = {
    "Morpho": f"{MORPHO_PACKAGE}/src/Morpho.sol",
    "DevnetChainlinkOracle": "chainwatch/morpho/DevnetChainlinkOracle.sol",
    "FixedRateIrm": "chainwatch/morpho/FixedRateIrm.sol",
}


def morpho_sources() -> dict[str, str]:
    """Every Morpho source but the mocks (imports resolve inside the set), plus ours."""
    package_src = node_package(MORPHO_PACKAGE) / "src"
    sources = {
        f"{MORPHO_PACKAGE}/src/{path.relative_to(package_src).as_posix()}": path.read_text()
        for path in sorted(package_src.rglob("*.sol"))
        if "mocks" not in path.relative_to(package_src).parts
    }
    return sources | sources_in(OWN_DIR, "chainwatch/morpho/")


# The default profile of Morpho's foundry.toml: via_ir, 999999 optimizer runs, paris, no metadata hash.
SETTINGS: Final = {
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 999_999},
    "evmVersion": "paris",
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {
        unit: {name: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]} for name, unit in CONTRACTS.items()
    },
}


async def compile_morpho() -> dict[str, Artifact]:
    """ABI and bytecode of Morpho and the devnet's oracle and IRM for it, by contract name (cached)."""
    return await compile_cached("morpho", morpho_sources(), CONTRACTS, settings=SETTINGS, solc_package=SOLC_PACKAGE)
