"""Library linking of Hardhat artifacts: solc's placeholder and its replacement at the recorded offsets."""

from __future__ import annotations

import re

import pytest

from chainwatch.devnet.artifacts import Artifact, LinkOffset, UnlinkedLibrary, library_placeholder, link_bytecode
from chainwatch.devnet.deploy import CONFIGURATOR, POOL, aave_artifact

BORROW_LOGIC = "contracts/protocol/libraries/logic/BorrowLogic.sol:BorrowLogic"
ADDRESS = "0x" + "ab" * 20


def artifact_with(code: str, offsets: list[int], qualified: str = BORROW_LOGIC) -> Artifact:
    source, name = qualified.split(":")
    refs = {source: {name: [LinkOffset(start=o, length=20) for o in offsets]}}
    return Artifact(name="Linked", abi=[], bytecode=code, deployed_bytecode="0x", link_references=refs)


class TestLibraryPlaceholder:
    def test_has_solc_shape(self) -> None:
        """`__$` + 34 lowercase hex chars + `$__`: exactly the 20 bytes an address takes."""
        placeholder = library_placeholder(BORROW_LOGIC)
        assert re.fullmatch(r"__\$[0-9a-f]{34}\$__", placeholder)
        assert len(placeholder) == 40

    @pytest.mark.parametrize("contract", [POOL, CONFIGURATOR])
    def test_matches_the_aave_artifacts_at_every_recorded_offset(self, contract: str) -> None:
        """Every linkReferences offset of Pool and PoolConfigurator holds the computed placeholder."""
        artifact = aave_artifact(contract)
        code = artifact.bytecode.removeprefix("0x")
        for source, names in artifact.link_references.items():
            for name, offsets in names.items():
                for offset in offsets:
                    at = code[2 * offset.start : 2 * (offset.start + offset.length)]
                    assert at == library_placeholder(f"{source}:{name}")


class TestLinkBytecode:
    def test_replaces_each_offset_with_the_address(self) -> None:
        """Both occurrences become the lowercase address; the surrounding code is untouched."""
        placeholder = library_placeholder(BORROW_LOGIC)
        artifact = artifact_with("0x6001" + placeholder + "5b" + placeholder, offsets=[2, 23])
        linked = link_bytecode(artifact, {BORROW_LOGIC: ADDRESS.upper().replace("0X", "0x")})
        assert linked == "0x6001" + "ab" * 20 + "5b" + "ab" * 20

    def test_links_the_real_pool_completely(self) -> None:
        """With the seven libraries given, no placeholder is left in Pool's creation code."""
        artifact = aave_artifact(POOL)
        linked = link_bytecode(artifact, {library: ADDRESS for library in artifact.libraries()})
        assert len(artifact.libraries()) == 7
        assert "__$" not in linked and len(linked) == len(artifact.bytecode)

    def test_missing_library_address_is_an_error(self) -> None:
        """A library without an address is named in the error."""
        artifact = artifact_with("0x" + library_placeholder(BORROW_LOGIC), offsets=[0])
        with pytest.raises(UnlinkedLibrary, match="BorrowLogic"):
            link_bytecode(artifact, {})

    def test_offset_without_the_placeholder_is_an_error(self) -> None:
        """An offset that does not hold the expected placeholder fails instead of corrupting code."""
        artifact = artifact_with("0x" + "00" * 40, offsets=[0])
        with pytest.raises(UnlinkedLibrary, match="expected placeholder"):
            link_bytecode(artifact, {BORROW_LOGIC: ADDRESS})
