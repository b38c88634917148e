// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/**
 * @title NaiveCredit
 * @author carbon-mrv contributors
 * @notice Benchmark baseline only (bench/gas.ts), never deployed by the platform: a plain OpenZeppelin
 * ERC-20 with 6 decimals and an owner-only mint, i.e. the naive "one transaction per facility" way to
 * credit facilities that the batch settlement is compared against.
 */
contract NaiveCredit is ERC20, Ownable {
    /**
     * @notice Deploys the token; the deployer may mint.
     */
    constructor() ERC20("Naive Credit", "NAIVE") Ownable(msg.sender) {}

    /**
     * @notice Mints credits. Requirements: caller is the owner.
     * @dev Emits {Transfer} from the zero address.
     * @param to the receiver
     * @param amount grams
     */
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /**
     * @notice 6 decimals, like the ledger.
     * @return 6
     */
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
