// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/**
 * @title ICreditLedger
 * @author carbon-mrv contributors
 * @notice The next ledger (docs/CONTRACTS.md, "CreditLedger (next ledger)"): credits with provenance.
 * Credits are ERC-1155 batches, one token id per facility per vintage (UTC calendar month of the
 * window), every gram with a serial `{facilityId}-{YYYY-MM}-{n}`; numbered retirement certificates;
 * append-only correction settlements; device public keys recorded on chain. The ERC-1155,
 * AccessControl, Pausable and EIP-712 parts are the OpenZeppelin interfaces; this file declares
 * everything specific to the ledger.
 * @dev A facility is addressed by `key = keccak256(bytes(facilityId))`. Its batch of vintage `v`
 * (`v = year * 100 + month`, e.g. 202601) has token id `(uint256(key) >> 32 << 32) | v`. Times are
 * UNIX seconds; amounts are grams (1 unit = 1 g CO2e).
 */
interface ICreditLedger {
    /**
     * @notice One settlement of one facility over the window [windowStart, windowStart + windowSeconds).
     * @dev `windowStart` must equal the facility's next window start (contiguity, exactly once).
     */
    struct SettlementInput {
        bytes32 facility;
        uint64 windowStart;
        int256 netGrams;
        bytes32 evidenceRoot;
    }

    /**
     * @notice A correction of a settled window: the signed difference between the recomputed and the
     * settled net. `seq` numbers the corrections of that facility-window from 1 (exactly once);
     * `voidId` is the regulator's void (see {voidReadings}) that authorises it.
     */
    struct CorrectionInput {
        bytes32 facility;
        uint64 windowStart;
        uint32 seq;
        uint256 voidId;
        int256 deltaGrams;
        bytes32 evidenceRoot;
        string reason;
    }

    /// @notice Everything the chain knows about a facility, as returned by {facility}.
    // A view's return value, never stored: field order is for reading, not slot packing.
    // solhint-disable-next-line gas-struct-packing
    struct FacilityInfo {
        string facilityId;
        address owner;
        bool suspended;
        uint64 firstWindowStart;
        uint64 nextWindowStart;
        uint32 firstVintage;
        uint32 currentVintage;
        uint256 baselineMgPerHour;
        uint256 exportAllowanceGPerHour;
        uint64 limitsEffectiveFrom;
        uint256 capGramsPerWindow;
        bool limitsPending;
        uint256 pendingBaselineMgPerHour;
        uint256 pendingExportAllowanceGPerHour;
        uint64 pendingEffectiveFrom;
        uint256 deficit;
    }

    /// @notice A batch (facility x vintage), as returned by {batch}. supply = issued - retired - burned.
    struct BatchInfo {
        uint256 id;
        bytes32 facility;
        string facilityId;
        uint32 vintage;
        uint256 issued;
        uint256 retired;
        uint256 burned;
        uint256 supply;
        uint256 ownerBalance;
    }

    /// @notice One batch's part of a retirement: serials firstSerial .. firstSerial + amount - 1.
    struct RetiredPart {
        uint256 batchId;
        uint64 amount;
        uint64 firstSerial;
    }

    /// @notice A retirement certificate, as returned by {retirement}.
    struct RetirementInfo {
        uint256 id;
        address account;
        uint64 retiredAt;
        uint256 amount;
        string beneficiary;
        string reason;
        RetiredPart[] parts;
    }

    // ----- registry errors
    /// @notice The facility key has no registered facility.
    error FacilityNotRegistered(bytes32 facility);
    /// @notice A facility with this key (or the same token-id prefix) is already registered.
    error FacilityAlreadyRegistered(bytes32 facility);
    /// @notice The facility owner must not be the zero address.
    error InvalidFacilityOwner(address owner);
    /// @notice Facility ids are 1..64 characters of [A-Za-z0-9_-].
    error InvalidFacilityId(uint256 length);
    /// @notice A limits change cannot apply to a window that is already settled.
    error BaselineEffectiveTooEarly(bytes32 facility, uint64 effectiveFrom, uint64 nextWindowStart);
    /// @notice Another limits change is scheduled (at `pendingEffectiveFrom`); only one at a time.
    error LimitsChangePending(bytes32 facility, uint64 pendingEffectiveFrom);
    /// @notice The cap (baseline + export allowance, per window) must stay below 2^56 g.
    error CapOutOfRange(bytes32 facility, uint256 capGramsPerWindow);
    /// @notice A role holder given to the constructor is the zero address.
    error InvalidRoleHolder(address account);
    /// @notice Window length must be 1 s .. 28 days (so every calendar month has a window start).
    error InvalidWindowLength(uint64 windowSeconds);
    /// @notice The time is not a multiple of the window length.
    error MisalignedWindow(bytes32 facility, uint64 time);
    /// @notice The facility has settled a window: it can no longer be removed or change owner.
    error FacilityHasSettlements(bytes32 facility);
    /// @notice Device ids are 1..64 bytes; a void range must be non-empty and carry a reason.
    error InvalidDeviceRecord();

    // ----- settlement errors
    /// @notice The window starts before the facility's next unsettled window: it is already settled.
    error WindowAlreadySettled(bytes32 facility, uint64 windowStart);
    /// @notice The window starts after the facility's next unsettled window: settling it would leave a gap.
    error WindowOutOfOrder(bytes32 facility, uint64 expected, uint64 got);
    /// @notice The window has not ended yet (windowEnd > block.timestamp).
    error WindowNotEnded(bytes32 facility, uint64 windowEnd, uint256 blockTime);
    /// @notice The net exceeds the facility's cap for the window (baseline + export allowance).
    error NetAboveCap(bytes32 facility, int256 netGrams, uint256 capGramsPerWindow);
    /// @notice |netGrams| must be below 2^63.
    error NetOutOfRange(bytes32 facility, int256 netGrams);
    /// @notice A batch or facility total would leave its 64-bit field.
    error TotalOutOfRange(bytes32 facility);

    // ----- correction errors
    /// @notice A correction must reference a settled window of the facility.
    error CorrectionOfUnsettledWindow(bytes32 facility, uint64 windowStart, uint64 nextWindowStart);
    /// @notice Corrections of a window are numbered 1, 2, ... in order.
    error CorrectionOutOfOrder(bytes32 facility, uint64 windowStart, uint32 expected, uint32 got);
    /// @notice The window's corrections together would add more than one window cap.
    error CorrectionAboveCap(bytes32 facility, uint64 windowStart, int256 cumulativeDelta, uint256 capGramsPerWindow);
    /// @notice A correction needs a reason (1..256 bytes).
    error MissingCorrectionReason();
    /// @notice No regulator void of this facility covers the window (settled before the void, ending after its start).
    error CorrectionNotAuthorized(bytes32 facility, uint64 windowStart, uint256 voidId);

    // ----- token and retirement errors
    /// @notice The facility is suspended: its batches cannot move or be retired, wherever held.
    error FacilityIsSuspended(bytes32 facility);
    /// @notice The facility is in deficit: its owner's credits of it cannot move or be retired.
    error FacilityInDeficit(bytes32 facility, uint256 deficit);
    /// @notice The facility's settlement lags more than two windows: its owner's credits of it are frozen.
    error FacilityLagging(bytes32 facility, uint64 nextWindowStart);
    /// @notice No batch with this token id exists.
    error BatchNotFound(uint256 id);
    /// @notice Each retired amount must be at least one gram and below 2^64.
    error InvalidRetirementAmount(uint256 amount);
    /// @notice A retirement takes 1..MAX_RETIRE_BATCHES batches.
    error InvalidRetirementBatchCount(uint256 count);
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
    // Settlement events index only the facility: another topic costs 375 gas against 256 for a data
    // word, once per facility per window.
    /* solhint-disable gas-indexed-events */
    /**
     * @notice A regulator registered a facility.
     * @param facility keccak256 of the facility id
     * @param facilityId the facility id as text
     * @param owner the account that receives the facility's credits
     * @param baselineMgPerHour baseline emissions in mg CO2e per hour
     * @param firstWindowStart start of the first window to settle
     */
    event FacilityRegistered(
        bytes32 indexed facility,
        string facilityId,
        address indexed owner,
        uint256 baselineMgPerHour,
        uint64 firstWindowStart
    );
    /// @notice A regulator suspended a facility: its batches are frozen wherever held.
    /// @param facility the facility key
    event FacilitySuspended(bytes32 indexed facility);
    /// @notice A regulator lifted a facility's suspension.
    /// @param facility the facility key
    event FacilityReinstated(bytes32 indexed facility);
    /**
     * @notice A regulator scheduled a new baseline.
     * @param facility the facility key
     * @param baselineMgPerHour the baseline in mg CO2e per hour
     * @param effectiveFrom first window start it applies to
     */
    event BaselineChanged(bytes32 indexed facility, uint256 baselineMgPerHour, uint64 effectiveFrom);
    /**
     * @notice A regulator scheduled a new export allowance (added to the baseline in the cap).
     * @param facility the facility key
     * @param gramsPerHour the allowance in g CO2e per hour
     * @param effectiveFrom first window start it applies to
     */
    event ExportAllowanceChanged(bytes32 indexed facility, uint256 gramsPerHour, uint64 effectiveFrom);
    /**
     * @notice The cap per window in force changed (at registration, or when a scheduled change applied).
     * @param facility the facility key
     * @param capGramsPerWindow the most a window may net, in grams
     * @param effectiveFrom first window start it applies to
     */
    event CapChanged(bytes32 indexed facility, uint256 capGramsPerWindow, uint64 effectiveFrom);
    /**
     * @notice A regulator corrected the owner of a facility that never settled.
     * @param facility the facility key
     * @param previousOwner the owner it was registered with
     * @param newOwner the corrected owner
     */
    event FacilityOwnerChanged(bytes32 indexed facility, address indexed previousOwner, address indexed newOwner);
    /// @notice A regulator removed a facility that never settled.
    /// @param facility the facility key
    event FacilityDeregistered(bytes32 indexed facility);
    /**
     * @notice A facility's batch of a new vintage was opened (its first window of that month settled).
     * Only the id is logged (the first settlement of each month pays for this event): the vintage is
     * its low 32 bits, the facility the one whose key shares its high 224 bits (also the `facility`
     * of the {WindowSettled} in the same transaction, and {batch} on chain).
     * @param batchId the token id
     */
    event BatchCreated(uint256 indexed batchId);
    /**
     * @notice A window was settled. Minted grams have serials firstSerial .. firstSerial + minted - 1
     * in the batch of the window's vintage. Burns are itemised by the {CreditsBurned} events just
     * before it (their sum is what this window burned; not repeated here: every settlement would pay
     * for the word).
     * @param facility the facility key
     * @param windowStart window start (the window is [windowStart, windowStart + windowSeconds))
     * @param netGrams baseline minus actual emissions, in grams (signed)
     * @param minted grams minted to the owner (net minus the deficit paid down)
     * @param firstSerial first serial minted (0 when nothing was minted)
     * @param deficitAfter the facility's deficit after this settlement
     * @param evidenceRoot Merkle root of the evidence
     */
    event WindowSettled(
        bytes32 indexed facility,
        uint64 windowStart,
        int256 netGrams,
        uint256 minted,
        uint256 firstSerial,
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
     * @notice A correction settlement (append-only) of a settled window.
     * @param facility the facility key
     * @param windowStart the corrected window
     * @param seq the correction's number for that window (from 1)
     * @param voidId the void that authorised it
     * @param deltaGrams recomputed net minus settled net
     * @param minted grams minted into the window's vintage batch
     * @param firstSerial first serial minted (0 when nothing was minted)
     * @param burned grams burned (itemised by {CreditsBurned})
     * @param deficitAfter the facility's deficit afterwards
     * @param evidenceRoot the correction's own evidence root
     * @param reason why (e.g. the readings void)
     */
    event CorrectionSettled(
        bytes32 indexed facility,
        uint64 windowStart,
        uint32 seq,
        uint256 voidId,
        int256 deltaGrams,
        uint256 minted,
        uint256 firstSerial,
        uint256 burned,
        uint256 deficitAfter,
        bytes32 evidenceRoot,
        string reason
    );
    /**
     * @notice A correction already applied was skipped (a harmless retry).
     * @param facility the facility key
     * @param windowStart the corrected window
     * @param seq the skipped correction's number
     */
    event CorrectionSkipped(bytes32 indexed facility, uint64 windowStart, uint32 seq);
    /**
     * @notice Credits of a batch were burned for a negative net: serials firstSerial .. + amount - 1.
     * @param batchId the token id
     * @param from the facility owner
     * @param amount grams
     * @param firstSerial first serial burned
     */
    event CreditsBurned(uint256 indexed batchId, address indexed from, uint256 amount, uint256 firstSerial);
    /**
     * @notice A retirement certificate was created; its parts are the {BatchRetired} events before it.
     * @param id the certificate number (from 1)
     * @param account the holder whose credits were retired
     * @param amount grams retired in total
     * @param beneficiary on whose behalf
     * @param reason why
     */
    event CreditsRetired(uint256 indexed id, address indexed account, uint256 amount, string beneficiary, string reason);
    /**
     * @notice One batch's part of retirement `id`: serials firstSerial .. firstSerial + amount - 1.
     * @param id the certificate number
     * @param batchId the token id
     * @param amount grams
     * @param firstSerial first serial retired
     */
    event BatchRetired(uint256 indexed id, uint256 indexed batchId, uint256 amount, uint256 firstSerial);
    /**
     * @notice A regulator set, rotated (previousKey != 0) or revoked (publicKey == 0) a device's key.
     * @param device keccak256 of the device id
     * @param deviceId the device id
     * @param publicKey the Ed25519 public key (32 bytes)
     * @param previousKey the key it replaces (0 when none)
     */
    event DeviceKeySet(bytes32 indexed device, string deviceId, bytes32 publicKey, bytes32 previousKey);
    /**
     * @notice A regulator voided a device's readings over [from, to) (kept, flagged, excluded). It
     * authorises corrections of the facility's windows settled before it that end after `from`.
     * @param id the void's number (from 1), referenced by corrections
     * @param facility the facility key
     * @param device keccak256 of the device id
     * @param deviceId the device id
     * @param from first second voided
     * @param to end of the range (exclusive)
     * @param settledBefore the facility's next window start when the void was recorded
     * @param reason why
     */
    event ReadingsVoided(
        uint256 indexed id,
        bytes32 indexed facility,
        bytes32 indexed device,
        string deviceId,
        uint64 from,
        uint64 to,
        uint64 settledBefore,
        string reason
    );
    /* solhint-enable gas-indexed-events */

    // ----- registry
    /**
     * @notice Registers a facility. Requirements: REGULATOR_ROLE; id 1..64 of [A-Za-z0-9_-], not
     * registered; owner non-zero (a contract owner must accept ERC-1155, checked here once);
     * firstWindowStart a multiple of windowSeconds; the cap fits.
     * @dev Emits {FacilityRegistered} and {CapChanged}.
     * @param facilityId the facility id
     * @param owner the account that receives the facility's credits (may own several facilities)
     * @param baselineMgPerHour baseline in mg CO2e per hour
     * @param firstWindowStart start of the first window to settle
     * @return key the facility key
     */
    function registerFacility(
        string calldata facilityId,
        address owner,
        uint256 baselineMgPerHour,
        uint64 firstWindowStart
    ) external returns (bytes32 key);

    /**
     * @notice Suspends or reinstates a facility (no-op when unchanged). Requirements: REGULATOR_ROLE.
     * @param key the facility key
     * @param suspended true to suspend
     */
    function setFacilitySuspended(bytes32 key, bool suspended) external;

    /**
     * @notice Schedules a baseline from window `effectiveFrom` on (>= next window, aligned). One
     * change may be pending at a time (another at the same effectiveFrom merges into it).
     * @param key the facility key
     * @param baselineMgPerHour mg CO2e per hour
     * @param effectiveFrom first window start it applies to
     */
    function setBaseline(bytes32 key, uint256 baselineMgPerHour, uint64 effectiveFrom) external;

    /**
     * @notice Schedules an export allowance (g/h, default 0), added to the baseline in the cap. Same
     * rules as {setBaseline}.
     * @param key the facility key
     * @param gramsPerHour g CO2e per hour
     * @param effectiveFrom first window start it applies to
     */
    function setExportAllowance(bytes32 key, uint256 gramsPerHour, uint64 effectiveFrom) external;

    /**
     * @notice Corrects the owner of a facility that never settled.
     * @param key the facility key
     * @param newOwner the corrected owner
     */
    function setFacilityOwner(bytes32 key, address newOwner) external;

    /**
     * @notice Removes a facility that never settled.
     * @param key the facility key
     */
    function deregisterFacility(bytes32 key) external;

    /**
     * @notice Records (or rotates, or with 0 revokes) a device's Ed25519 public key. REGULATOR_ROLE.
     * @param deviceId the device id
     * @param publicKey the 32-byte key
     */
    function setDeviceKey(string calldata deviceId, bytes32 publicKey) external;

    /**
     * @notice Records that a device's readings over [from, to) are void; authorises the corrections of
     * the facility's windows already settled that end after `from`. REGULATOR_ROLE.
     * @param facility the device's facility
     * @param deviceId the device id
     * @param from first second voided
     * @param to end (exclusive)
     * @param reason why (1..256 bytes)
     * @return id the void's number
     */
    function voidReadings(
        bytes32 facility,
        string calldata deviceId,
        uint64 from,
        uint64 to,
        string calldata reason
    ) external returns (uint256 id);

    // ----- settlement
    /**
     * @notice Settles one window. Requirements: ORACLE_ROLE; not paused; registered; windowStart ==
     * next window start; windowStart + windowSeconds <= block.timestamp; net <= cap.
     * @param input the settlement
     */
    function settle(SettlementInput calldata input) external;

    /**
     * @notice Settles many windows in order; an already-settled entry is skipped with
     * {SettlementSkipped}, any other failure reverts the batch.
     * @param inputs the settlements
     */
    function settleBatch(SettlementInput[] calldata inputs) external;

    /**
     * @notice Applies corrections in order; one already applied (seq <= count) is skipped with
     * {CorrectionSkipped}. Requirements: ORACLE_ROLE; not paused; the window settled; a regulator void
     * of the facility covering it; seq == count + 1; the window's corrections add at most one cap in
     * total; a reason.
     * @param inputs the corrections
     */
    function settleCorrections(CorrectionInput[] calldata inputs) external;

    // ----- retirement
    /**
     * @notice Retires the caller's credits from one or several batches; creates a certificate.
     * @param batchIds token ids (a batch may appear more than once)
     * @param amounts grams per entry
     * @param beneficiary on whose behalf (1..256 bytes)
     * @param reason why (up to 256 bytes)
     * @return id the certificate number
     */
    function retire(
        uint256[] calldata batchIds,
        uint256[] calldata amounts,
        string calldata beneficiary,
        string calldata reason
    ) external returns (uint256 id);

    /**
     * @notice Retires a holder's credits on a signed EIP-712 request, relayed by anyone.
     * @param holder the account whose credits are retired
     * @param batchIds token ids
     * @param amounts grams per entry
     * @param beneficiary on whose behalf
     * @param reason why
     * @param nonce the holder's current nonce
     * @param deadline last valid second
     * @param signature the holder's signature over the Retire typed data
     * @return id the certificate number
     */
    function retireWithSig(
        address holder,
        uint256[] calldata batchIds,
        uint256[] calldata amounts,
        string calldata beneficiary,
        string calldata reason,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external returns (uint256 id);

    // ----- admin
    /// @notice Pauses settlement, corrections, transfers and retirements. DEFAULT_ADMIN_ROLE.
    function pause() external;

    /// @notice Lifts the pause. DEFAULT_ADMIN_ROLE.
    function unpause() external;

    // ----- views
    /**
     * @notice A facility's registry entry, limits and deficit.
     * @param key the facility key
     * @return info the facility
     */
    function facility(bytes32 key) external view returns (FacilityInfo memory info);

    /**
     * @notice The facilities an account owns.
     * @param owner the account
     * @return keys facility keys
     */
    function facilitiesOf(address owner) external view returns (bytes32[] memory keys);

    /**
     * @notice A batch's metadata and totals. Requirements: the batch exists.
     * @param id the token id
     * @return info the batch
     */
    function batch(uint256 id) external view returns (BatchInfo memory info);

    /**
     * @notice The token ids of a facility's batches, oldest vintage first.
     * @param key the facility key
     * @return ids token ids
     */
    function batchesOf(bytes32 key) external view returns (uint256[] memory ids);

    /**
     * @notice One retirement certificate. Requirements: the id exists.
     * @param id the certificate number
     * @return info the certificate
     */
    function retirement(uint256 id) external view returns (RetirementInfo memory info);

    /**
     * @notice Number of retirements so far (the highest id).
     * @return count the number
     */
    function retirementCount() external view returns (uint256 count);

    /**
     * @notice The current key of a device (0 when none).
     * @param device keccak256 of the device id
     * @return publicKey the Ed25519 key
     */
    function deviceKey(bytes32 device) external view returns (bytes32 publicKey);
}
