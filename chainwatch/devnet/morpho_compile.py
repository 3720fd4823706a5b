"""Compile the real Morpho Blue (npm `@morpho-org/morpho-blue`, sources only) with the project's own devnet
contracts for it, using solc-js 0.8.19 (`Morpho.sol` pins that version) with viaIR as Morpho builds it.

Output is cached under `<project root>/.cache/solc/`, keyed by every source, the settings and the compiler
version: viaIR in solc-js takes seconds, a cached deploy must not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from typing import Any, Final

import msgspec

from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.solc import CONTRACTS_DIR, CompileFailed, ToolingMissing, node_package, project_root

MORPHO_PACKAGE: Final = "@morpho-org/morpho-blue"
SOLC_PACKAGE: Final = "solc0819"
OWN_DIR: Final = CONTRACTS_DIR / "morpho"
# Source unit name -> contract: the real Morpho under the package's own import path, ours under chainwatch/.
CONTRACTS: Final = {
    "Morpho": f"{MORPHO_PACKAGE}/src/Morpho.sol",
    "DevnetChainlinkOracle": "chainwatch/morpho/DevnetChainlinkOracle.sol",
    "FixedRateIrm": "chainwatch/morpho/FixedRateIrm.sol",
}
_ARTIFACTS: Final = msgspec.json.Decoder(dict[str, Artifact])

_COMPILE_JS: Final = """
const solc = require(process.env.CHAINWATCH_SOLCJS);
const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => process.stdout.write(solc.compile(Buffer.concat(chunks).toString('utf8'))));
"""


def standard_json_input() -> dict[str, Any]:
    """Every Morpho source but the mocks (imports resolve inside the set), plus ours; settings as Morpho's build."""
    package_src = node_package(MORPHO_PACKAGE) / "src"
    sources = {
        f"{MORPHO_PACKAGE}/src/{path.relative_to(package_src).as_posix()}": {"content": path.read_text()}
        for path in sorted(package_src.rglob("*.sol"))
        if "mocks" not in path.relative_to(package_src).parts
    }
    own = sorted(OWN_DIR.glob("*.sol"))
    sources |= {f"chainwatch/morpho/{path.name}": {"content": path.read_text()} for path in own}
    wanted = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            # The default profile of Morpho's foundry.toml: via_ir, 999999 optimizer runs, paris, no metadata hash.
            "viaIR": True,
            "optimizer": {"enabled": True, "runs": 999_999},
            "evmVersion": "paris",
            "metadata": {"bytecodeHash": "none"},
            "outputSelection": {unit: {name: wanted} for name, unit in CONTRACTS.items()},
        },
    }


def solc_version() -> str:
    manifest = json.loads((node_package(SOLC_PACKAGE) / "package.json").read_text())
    return str(manifest["version"])


async def compile_morpho() -> dict[str, Artifact]:
    """ABI and bytecode of Morpho and the devnet's oracle and IRM for it, by contract name (cached)."""
    source = json.dumps(standard_json_input(), sort_keys=True).encode()
    version = solc_version()
    key = hashlib.sha256(source + b"\0solc-js " + version.encode()).hexdigest()
    cache_file = project_root() / ".cache" / "solc" / f"morpho-{key}.json"
    if cache_file.is_file():
        try:
            return _ARTIFACTS.decode(cache_file.read_bytes())
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # an older layout of Artifact: compile again and overwrite
    artifacts = _artifacts_from_output(await _run_solcjs(source))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".{os.getpid()}.tmp")  # renamed into place: readers never see half a file
    partial.write_bytes(msgspec.json.encode(artifacts))
    partial.replace(cache_file)
    return artifacts


async def _run_solcjs(standard_json: bytes) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise ToolingMissing("node is not on PATH", "install Node.js 18 or later, then run scripts/bootstrap")
    env = {**os.environ, "CHAINWATCH_SOLCJS": str(node_package(SOLC_PACKAGE))}
    process = await asyncio.create_subprocess_exec(
        node, "-e", _COMPILE_JS, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate(standard_json)
    if process.returncode != 0:
        raise CompileFailed([f"node exited with {process.returncode}: {stderr.decode(errors='replace').strip()}"])
    output: dict[str, Any] = json.loads(stdout)
    return output


def _artifacts_from_output(output: dict[str, Any]) -> dict[str, Artifact]:
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise CompileFailed(errors)
    artifacts: dict[str, Artifact] = {}
    for name, unit in CONTRACTS.items():
        compiled = output["contracts"][unit][name]
        artifacts[name] = Artifact(
            name=name,
            abi=compiled["abi"],
            bytecode="0x" + compiled["evm"]["bytecode"]["object"],
            deployed_bytecode="0x" + compiled["evm"]["deployedBytecode"]["object"],
        )
    return artifacts

