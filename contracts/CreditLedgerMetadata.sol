// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {Base64} from "@openzeppelin/contracts/utils/Base64.sol";
import {ICreditLedger} from "./ICreditLedger.sol";

/**
 * @title CreditLedgerMetadata
 * @author carbon-mrv contributors
 * @notice Renders a CreditLedger batch as ERC-1155 metadata JSON in a `data:` URI. Stateless; deployed
 * by CreditLedger's constructor so the ledger's own code stays under the 24 KiB limit.
 */
contract CreditLedgerMetadata {
    /**
     * @notice The batch's metadata: name, description, decimals 6 (1 unit = 1 g, 1 token = 1 t), and
     * properties facilityId, facility (key), vintage (YYYY-MM), issued, retired, burned (grams).
     * @param b the batch, as returned by CreditLedger.batch
     * @return `data:application/json;base64,...`
     */
    function render(ICreditLedger.BatchInfo calldata b) external pure returns (string memory) {
        uint32 m = b.vintage % 100;
        string memory vintage = string.concat(Strings.toString(b.vintage / 100), m < 10 ? "-0" : "-", Strings.toString(m));
        // Facility ids are [A-Za-z0-9_-] (checked at registration): nothing to escape.
        // solhint-disable-next-line gas-small-strings
        bytes memory json = abi.encodePacked(
            "{\"name\":\"", b.facilityId, " ", vintage, "\",\"description\":\"Carbon credits of facility ", b.facilityId,
            ", vintage ", vintage, "; 1 unit = 1 g CO2e; serials ", b.facilityId, "-", vintage, "-n\",\"decimals\":6,"
        );
        json = abi.encodePacked(
            json, "\"properties\":{\"facilityId\":\"", b.facilityId, "\",\"facility\":\"",
            Strings.toHexString(uint256(b.facility), 32), "\",\"vintage\":\"", vintage, "\",\"issued\":\"",
            Strings.toString(b.issued)
        );
        json = abi.encodePacked(
            json, "\",\"retired\":\"", Strings.toString(b.retired), "\",\"burned\":\"", Strings.toString(b.burned), "\"}}"
        );
        return string.concat("data:application/json;base64,", Base64.encode(json));
    }
}
