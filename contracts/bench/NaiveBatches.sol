// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {ERC1155Burnable} from "@openzeppelin/contracts/token/ERC1155/extensions/ERC1155Burnable.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/**
 * @title NaiveBatches
 * @author carbon-mrv contributors
 * @notice Benchmark baseline only (bench/gas-1155.ts), never deployed by the platform: a plain
 * OpenZeppelin ERC-1155 with an owner-only mint and the holder's own burn, i.e. what a retirement of
 * one CreditLedger batch is compared against.
 */
contract NaiveBatches is ERC1155, ERC1155Burnable, Ownable {
    /**
     * @notice Deploys the token; the deployer may mint.
     */
    constructor() ERC1155("") Ownable(msg.sender) {}

    /**
     * @notice Mints credits of a batch. Requirements: caller is the owner.
     * @dev Emits {TransferSingle} from the zero address.
     * @param to the receiver
     * @param id the batch
     * @param amount grams
     */
    function mint(address to, uint256 id, uint256 amount) external onlyOwner {
        _mint(to, id, amount, "");
    }
}
