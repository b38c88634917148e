// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/**
 * @title ICarbonLedger
 * @author carbon-mrv contributors
 * @notice Facility registry, credit token (ERC-20, 6 decimals, 1 base unit = 1 g CO2e), settlement of
 * (facility, window) net emissions and numbered retirements. The ERC-20, AccessControl, Pausable and
 * EIP-712 parts are the OpenZeppelin interfaces; this file declares everything specific to the ledger.
 * @dev A facility is addressed on chain by `key = keccak256(bytes(facilityId))`. Times are UNIX seconds.
 */
interface ICarbonLedger {
    /**
     * @notice One settlement of one facility over one window [windowStart, windowEnd).
     * @dev `windowStart` must equal the facility's `nextWindowStart` (contiguity, exactly once).
     */
    struct SettlementInput {
        bytes32 facility;
        uint64 windowStart;
        uint64 windowEnd;
        int256 netGrams;
        bytes32 evidenceRoot;
    }

    /// @notice Everything the chain knows about a facility, as returned by {facility}.
    struct FacilityInfo {
        address owner;
        uint64 nextWindowStart;
        bool suspended;
        uint64 baselineEffectiveFrom;
        uint256 baselineMgPerHour;
        uint256 minted;
        uint256 burned;
        uint256 retired;
        uint256 deficit;
    }

    /// @notice A retirement record, as returned by {retirement}.
    struct RetirementInfo {
        uint256 id;
        address account;
        uint64 retiredAt;
        bytes32 facility;
        uint256 amount;
        string beneficiary;
        string reason;
    }

    // ----- registry errors
    /// @notice The facility key has no registered facility.
    error FacilityNotRegistered(bytes32 facility);
    /// @notice A facility with this key is already registered.
    error FacilityAlreadyRegistered(bytes32 facility);
    /// @notice The owner address already owns a facility (one facility per owner).
    error OwnerAlreadyHasFacility(address owner, bytes32 facility);
    /// @notice The facility owner must not be the zero address.
    error InvalidFacilityOwner(address owner);
    /// @notice Facility ids are 1..64 bytes.
    error InvalidFacilityId(uint256 length);
    /// @notice A baseline change cannot apply to a window that is already settled.
    error BaselineEffectiveTooEarly(bytes32 facility, uint64 effectiveFrom, uint64 nextWindowStart);
    /// @notice A role holder given to the constructor is the zero address.
    error InvalidRoleHolder(address account);
    /// @notice The facility has settled a window: it can no longer be removed or change owner.
    error FacilityHasSettlements(bytes32 facility, uint64 nextWindowStart);
    /// @notice Device ids are 1..64 bytes.
    error InvalidDeviceId(uint256 length);

    // ----- settlement errors
    /// @notice The window starts before the facility's next unsettled window: it is already settled.
    error WindowAlreadySettled(bytes32 facility, uint64 windowStart);
    /// @notice The window starts after the facility's next unsettled window: settling it would leave a gap.
    error WindowOutOfOrder(bytes32 facility, uint64 expected, uint64 got);
    /// @notice The window is empty or reversed (windowEnd <= windowStart).
    error InvalidWindow(bytes32 facility, uint64 windowStart, uint64 windowEnd);
    /// @notice The total supply would exceed 2^64 - 1 grams (per-account figures are stored in 64 bits).
    error SupplyCapExceeded(uint256 supply);
    /// @notice |netGrams| must be below 2^64 (about 18 trillion tonnes).
    error NetOutOfRange(bytes32 facility, int256 netGrams);
    /// @notice A facility total (minted, burned or deficit) would exceed 2^64 - 1 grams.
    error TotalOutOfRange(bytes32 facility);

    // ----- token and retirement errors
    /// @notice The account's facility is suspended: its credits cannot move or be retired.
    error FacilityIsSuspended(bytes32 facility, address account);
    /// @notice A retirement must retire at least one gram.
    error InvalidRetirementAmount(uint256 amount);
    /// @notice A retirement must name a beneficiary.
    error MissingBeneficiary();
    /// @notice Beneficiary and reason are limited in length.
    error RetirementTextTooLong(uint256 length, uint256 maxLength);
    /// @notice The signed retirement request is past its deadline.
    error RetirementSignatureExpired(uint256 deadline);
    /// @notice The signature is not the holder's (EOA or ERC-1271 wallet) over this request.
    error InvalidRetirementSignature(address holder);
    /// @notice There is no retirement with this id.
    error RetirementNotFound(uint256 id);

    // ----- events
    // Event parameters are indexed only where clients filter on them (facility, owner, retirement id,
    // account). An extra topic costs 375 gas against 256 for a data word, and WindowSettled is emitted
    // once per facility per window, so the gas-indexed-events suggestion is off for this block.
    /* solhint-disable gas-indexed-events */
    /**
     * @notice A regulator registered a facility.
     * @param facility keccak256 of the facility id
     * @param facilityId the facility id as text
     * @param owner the address that receives the facility's credits
     * @param baselineMgPerHour baseline emissions in mg CO2e per hour (kg/h * 1e6)
     * @param firstWindowStart start of the first window to settle (UNIX seconds)
     */
    event FacilityRegistered(
        bytes32 indexed facility,
        string facilityId,
        address indexed owner,
        uint256 baselineMgPerHour,
        uint64 firstWindowStart
    );
    /**
     * @notice A regulator suspended a facility: its credits are frozen (no transfer, no retirement).
     * @param facility the facility key
     */
    event FacilitySuspended(bytes32 indexed facility);
    /**
     * @notice A regulator lifted a facility's suspension.
     * @param facility the facility key
     */
    event FacilityReinstated(bytes32 indexed facility);
    /**
     * @notice A regulator changed a facility's baseline.
     * @param facility the facility key
     * @param baselineMgPerHour the new baseline in mg CO2e per hour
     * @param effectiveFrom first window start (UNIX seconds) the new baseline applies to
     */
    event BaselineChanged(bytes32 indexed facility, uint256 baselineMgPerHour, uint64 effectiveFrom);
    /**
     * @notice A regulator corrected the owner of a facility that never settled.
     * @param facility the facility key
     * @param previousOwner the owner it was registered with
     * @param newOwner the corrected owner
     */
    event FacilityOwnerChanged(bytes32 indexed facility, address indexed previousOwner, address indexed newOwner);
    /**
     * @notice A regulator removed a facility that never settled (its id may be registered again).
     * @param facility the facility key
     */
    event FacilityDeregistered(bytes32 indexed facility);
    /**
     * @notice A regulator set, rotated (previousKey != 0) or revoked (publicKey == 0) a device's key.
     * @param device keccak256 of the device id
     * @param deviceId the device id
     * @param publicKey the Ed25519 public key (32 bytes)
     * @param previousKey the key it replaces (0 when none)
     */
    event DeviceKeySet(bytes32 indexed device, string deviceId, bytes32 publicKey, bytes32 previousKey);
    /**
     * @notice A window of a facility was settled. Carries everything needed to verify it later.
     * @param facility the facility key
     * @param windowStart window start (UNIX seconds, inclusive)
     * @param windowEnd window end (UNIX seconds, exclusive); the facility's next window starts here
     * @param netGrams baseline minus actual emissions, in grams (signed)
     * @param minted grams minted to the owner (net minus the deficit paid down)
     * @param burned grams burned from the owner's balance
     * @param deficitAfter the facility's deficit after this settlement
     * @param evidenceRoot Merkle root of the evidence the settlement was computed from
     */
    event WindowSettled(
        bytes32 indexed facility,
        uint64 windowStart,
        uint64 windowEnd,
        int256 netGrams,
        uint256 minted,
        uint256 burned,
        uint256 deficitAfter,
        bytes32 evidenceRoot
    );
    /**
     * @notice A batch entry was skipped because its window was already settled (a harmless retry).
     * @param facility the facility key
     * @param windowStart the window start of the skipped entry
     */
    event SettlementSkipped(bytes32 indexed facility, uint64 windowStart);
    /**
     * @notice Credits were retired (burned for good) and a numbered record was created.
     * @param id the retirement id (from 1)
     * @param account the holder whose credits were retired
     * @param facility the holder's facility key, or zero when the holder owns no facility
     * @param amount grams retired
     * @param beneficiary on whose behalf the credits were retired
     * @param reason why they were retired
     */
    event CreditsRetired(
        uint256 indexed id,
        address indexed account,
        bytes32 indexed facility,
        uint256 amount,
        string beneficiary,
        string reason
    );

    /* solhint-enable gas-indexed-events */

    // ----- registry
    /**
     * @notice Registers a facility. Requirements: caller has REGULATOR_ROLE; id is 1..64 bytes and not
     * registered; owner is non-zero and owns no facility yet.
     * @dev Emits {FacilityRegistered}.
     * @param facilityId the facility id (its keccak256 is the on-chain key)
     * @param owner the address that receives the facility's credits
     * @param baselineMgPerHour baseline emissions in mg CO2e per hour
     * @param firstWindowStart start of the first window to settle (UNIX seconds)
     * @return key the facility key
     */
    function registerFacility(
        string calldata facilityId,
        address owner,
        uint256 baselineMgPerHour,
        uint64 firstWindowStart
    ) external returns (bytes32 key);

    /**
     * @notice Suspends or reinstates a facility. Requirements: caller has REGULATOR_ROLE; the facility
     * is registered. Setting the current state again changes nothing and emits nothing.
     * @dev Emits {FacilitySuspended} or {FacilityReinstated} when the state changes.
     * @param key the facility key
     * @param suspended true to suspend, false to reinstate
     */
    function setFacilitySuspended(bytes32 key, bool suspended) external;

    /**
     * @notice Changes a facility's baseline from a future window on. Requirements: caller has
     * REGULATOR_ROLE; the facility is registered; effectiveFrom >= the facility's next window start.
     * @dev Emits {BaselineChanged}.
     * @param key the facility key
     * @param baselineMgPerHour the new baseline in mg CO2e per hour
     * @param effectiveFrom first window start (UNIX seconds) the new baseline applies to
     */
    function setBaseline(bytes32 key, uint256 baselineMgPerHour, uint64 effectiveFrom) external;

    /**
     * @notice Corrects the owner of a facility that never settled (registered with a wrong address).
     * Requirements: caller has REGULATOR_ROLE; the facility is registered and has not settled a
     * window; the new owner is non-zero and owns no facility.
     * @dev Emits {FacilityOwnerChanged}. Setting the same owner again changes nothing.
     * @param key the facility key
     * @param newOwner the corrected owner
     */
    function setFacilityOwner(bytes32 key, address newOwner) external;

    /**
     * @notice Removes a facility that never settled (registered by mistake). Requirements: caller has
     * REGULATOR_ROLE; the facility is registered and has not settled a window.
     * @dev Emits {FacilityDeregistered}. Its id and its owner may be registered again.
     * @param key the facility key
     */
    function deregisterFacility(bytes32 key) external;

    /**
     * @notice Records (or rotates, or with 0 revokes) a device's Ed25519 public key. Requirements:
     * caller has REGULATOR_ROLE; not paused; the id is 1..64 bytes. Setting the current key again
     * changes nothing and emits nothing.
     * @dev Emits {DeviceKeySet}. Auditors check device signatures against these events.
     * @param deviceId the device id
     * @param publicKey the 32-byte key
     */
    function setDeviceKey(string calldata deviceId, bytes32 publicKey) external;

    // ----- settlement
    /**
     * @notice Settles one window of one facility. Requirements: caller has ORACLE_ROLE; not paused;
     * facility registered; windowStart == the facility's next window start (else
     * {WindowAlreadySettled} or {WindowOutOfOrder}); windowEnd > windowStart.
     * @dev Emits {WindowSettled} and a {Transfer} for what is minted or burned.
     * @param input the settlement
     */
    function settle(SettlementInput calldata input) external;

    /**
     * @notice Settles many windows in one transaction, in order. An entry whose window is already
     * settled is skipped with {SettlementSkipped} (so a retried batch is harmless); any other failing
     * entry (unknown facility, gap, empty window) reverts the whole batch.
     * @dev Emits {WindowSettled} (and {Transfer}) per settled entry, {SettlementSkipped} per skipped one.
     * @param inputs the settlements
     */
    function settleBatch(SettlementInput[] calldata inputs) external;

    // ----- retirement
    /**
     * @notice Retires (burns) some of the caller's credits and records it. Requirements: not paused;
     * amount > 0 and <= balance; beneficiary non-empty; texts at most 256 bytes; the caller's
     * facility (if any) is not suspended.
     * @dev Emits {Transfer} to the zero address and {CreditsRetired}.
     * @param amount grams to retire
     * @param beneficiary on whose behalf
     * @param reason why
     * @return id the retirement id
     */
    function retire(uint256 amount, string calldata beneficiary, string calldata reason) external returns (uint256 id);

    /**
     * @notice Retires a holder's credits on a signed EIP-712 request; anyone may relay it.
     * Requirements: as {retire}, plus block.timestamp <= deadline, nonce == nonces(holder), and
     * signature valid for holder (ECDSA or ERC-1271).
     * @dev Emits {Transfer} to the zero address and {CreditsRetired}.
     * @param holder the account whose credits are retired
     * @param amount grams to retire
     * @param beneficiary on whose behalf
     * @param reason why
     * @param nonce the holder's current nonce
     * @param deadline last valid UNIX second
     * @param signature the holder's signature over the Retire typed data
     * @return id the retirement id
     */
    function retireWithSig(
        address holder,
        uint256 amount,
        string calldata beneficiary,
        string calldata reason,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external returns (uint256 id);

    // ----- admin
    /**
     * @notice Pauses settlement, transfers and retirements. Requirements: caller has DEFAULT_ADMIN_ROLE.
     * @dev Emits {Paused}.
     */
    function pause() external;

    /**
     * @notice Lifts the pause. Requirements: caller has DEFAULT_ADMIN_ROLE.
     * @dev Emits {Unpaused}.
     */
    function unpause() external;

    // ----- views
    /**
     * @notice A facility's registry entry and totals (all zero when not registered).
     * @param key the facility key
     * @return info the facility
     */
    function facility(bytes32 key) external view returns (FacilityInfo memory info);

    /**
     * @notice The facility an address owns (zero when none).
     * @param owner the address
     * @return key the facility key
     */
    function facilityOf(address owner) external view returns (bytes32 key);

    /**
     * @notice The current key of a device (0 when none).
     * @param device keccak256 of the device id
     * @return publicKey the Ed25519 key
     */
    function deviceKey(bytes32 device) external view returns (bytes32 publicKey);

    /**
     * @notice One retirement record. Requirements: the id exists.
     * @param id the retirement id
     * @return info the record
     */
    function retirement(uint256 id) external view returns (RetirementInfo memory info);

    /**
     * @notice The ids of an account's retirements, oldest first.
     * @param account the holder
     * @return ids the retirement ids
     */
    function retirementsOf(address account) external view returns (uint256[] memory ids);

    /**
     * @notice Number of retirements so far (the highest id).
     * @return count the number of retirements
     */
    function retirementCount() external view returns (uint256 count);
}
