"""Compile the project's own devnet contracts with the pinned solc-js, and find the pinned JavaScript tooling.

The compiler runs through node (standard JSON in, standard JSON out); its output is cached under
`<project root>/.cache/solc/` keyed by the inputs and the compiler version, so deploys after the first do not
pay solc-js's multi-second start-up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from chainwatch.devnet.artifacts import Artifact

CONTRACTS_DIR: Final = Path(__file__).resolve().parent / "contracts"
OWN_CONTRACTS: Final = ("Multicall3", "SettableFeed", "FeedProxy", "RevertingDecimalsToken", "RatioOracleAggregator",
                         "RedstoneMultiFeedAdapter", "RedstonePriceFeed", "PythPriceFeeds", "PythAggregator", "ScaledFeed")
BOOTSTRAP_HINT: Final = "run scripts/bootstrap"
_ARTIFACTS: Final = msgspec.json.Decoder(dict[str, Artifact])

# solc-js reads the standard JSON from stdin; the package path comes from the environment so the script
# never depends on node's module resolution from the current directory.
_COMPILE_JS: Final = """
const solc = require(process.env.CHAINWATCH_SOLCJS);
const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => process.stdout.write(solc.compile(Buffer.concat(chunks).toString('utf8'))));
"""


class ToolingMissing(Exception):
    """A piece of the pinned tooling (node, node_modules, a package in it) is not installed; one line."""

    def __init__(self, problem: str, remedy: str = BOOTSTRAP_HINT) -> None:
        super().__init__(f"{problem}: {remedy}")
        self.problem = problem


class CompileFailed(Exception):
    """solc reported errors for the project's own sources."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("solc failed:\n" + "\n".join(errors))
        self.errors = errors


def node_modules_dir() -> Path:
    """The pinned node_modules: `$CHAINWATCH_NODE_MODULES`, else the nearest one above this package."""
    override = os.environ.get("CHAINWATCH_NODE_MODULES")
    if override:
        path = Path(override)
        if not path.is_dir():
            raise ToolingMissing(f"CHAINWATCH_NODE_MODULES={override} is not a directory")
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "node_modules"
        if candidate.is_dir():
            return candidate
    raise ToolingMissing(f"no node_modules above {Path(__file__).resolve().parent}")


def project_root() -> Path:
    """The checkout holding this package (the package is installed editable); `.cache` lives there."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return node_modules_dir().resolve().parent


def node_package(name: str) -> Path:
    """The directory of one installed npm package, e.g. `solc` or `@aave/core-v3`."""
    path = node_modules_dir() / name
    if not path.is_dir():
        raise ToolingMissing(f"npm package {name} is not installed in {node_modules_dir()}")
    return path


def solc_version(package: str = "solc") -> str:
    """The pinned solc-js version, read from its package.json (loading the compiler takes seconds)."""
    manifest = json.loads((node_package(package) / "package.json").read_text())
    return str(manifest["version"])


DEFAULT_SETTINGS: Final[dict[str, Any]] = {
    "optimizer": {"enabled": True, "runs": 200},
    # Cancun runs on Anvil's default hardfork and on every chain the watcher targets.
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def sources_in(directory: Path, prefix: str = "") -> dict[str, str]:
    """Every `.sol` file of `directory` as solc source units, named `<prefix><file name>`."""
    return {f"{prefix}{path.name}": path.read_text() for path in sorted(directory.glob("*.sol"))}


async def compile_cached(
    label: str,
    sources: Mapping[str, str],
    contracts: Mapping[str, str],
    *,
    settings: Mapping[str, Any] = DEFAULT_SETTINGS,
    solc_package: str = "solc",
    artifact_prefix: str = "",
) -> dict[str, Artifact]:
    """Compiles `sources` (unit name -> text) and returns `contracts` (contract name -> its unit) as artifacts.

    The result is cached under `.cache/solc/<label>-<hash of inputs and compiler>.json`, so only a change of
    source, settings or compiler pays for solc-js again. `artifact_prefix` keeps artifact names unique where
    two families have a contract of the same name.
    """
    standard_json = {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": settings,
    }
    source = json.dumps(standard_json, sort_keys=True).encode()
    version = solc_version(solc_package)
    key = hashlib.sha256(source + b"\0solc-js " + version.encode()).hexdigest()
    cache_file = project_root() / ".cache" / "solc" / f"{label}-{key}.json"
    if cache_file.is_file():
        try:
            return _ARTIFACTS.decode(cache_file.read_bytes())
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # written by an older layout of Artifact: compile again and overwrite
    output = await _run_solcjs(source, solc_package)
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise CompileFailed(errors)
    artifacts = {}
    for name, unit in contracts.items():
        compiled = output["contracts"][unit][name]
        evm = compiled["evm"]
        artifacts[name] = Artifact(
            name=f"{artifact_prefix}{name}",
            abi=compiled["abi"],
            bytecode="0x" + evm["bytecode"]["object"],
            deployed_bytecode="0x" + evm["deployedBytecode"]["object"],
        )
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename so a concurrent reader never sees half a file.
    partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(msgspec.json.encode(artifacts))
    partial.replace(cache_file)
    return artifacts


async def compile_own_contracts() -> dict[str, Artifact]:
    """ABI and bytecode of each own contract by name (Multicall3, SettableFeed, FeedProxy)."""
    sources = {f"{name}.sol": (CONTRACTS_DIR / f"{name}.sol").read_text() for name in OWN_CONTRACTS}
    return await compile_cached("own", sources, {name: f"{name}.sol" for name in OWN_CONTRACTS})


async def _run_solcjs(standard_json: bytes, package: str = "solc") -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise ToolingMissing("node is not on PATH", "install Node.js 18 or later, then run scripts/bootstrap")
    env = {**os.environ, "CHAINWATCH_SOLCJS": str(node_package(package))}
    process = await asyncio.create_subprocess_exec(
        node, "-e", _COMPILE_JS, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate(standard_json)
    if process.returncode != 0:
        raise CompileFailed([f"node exited with {process.returncode}: {stderr.decode(errors='replace').strip()}"])
    output: dict[str, Any] = json.loads(stdout)
    return output
