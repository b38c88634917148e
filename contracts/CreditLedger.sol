// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

// "<=" / ">=" state the rules as written (window ended: end <= now; 1..12 months); a strict rewrite
// saves 3 gas each, off the hot path. Settlement and correction bodies stay whole for reading.
/* solhint-disable gas-strict-inequalities, function-max-lines */
// One contract keeps the settlement hot path free of external calls, hence its many state variables.
/* solhint-disable max-states-count */

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {IERC1155MetadataURI} from "@openzeppelin/contracts/token/ERC1155/extensions/IERC1155MetadataURI.sol";
import {ERC1155Utils} from "@openzeppelin/contracts/token/ERC1155/utils/ERC1155Utils.sol";
import {IERC1155Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {CreditLedgerMetadata} from "./CreditLedgerMetadata.sol";
import {ICreditLedger} from "./ICreditLedger.sol";

/**
 * @title CreditLedger
 * @author carbon-mrv contributors
 * @notice Facility registry and ERC-1155 credit batches with provenance: one token id per facility per
 * vintage (UTC month), serial ranges in events, numbered retirement certificates (direct or EIP-712),
 * append-only corrections, on-chain guards on what a settlement may mint, device keys as events.
 * Roles: DEFAULT_ADMIN_ROLE (pause, roles), REGULATOR_ROLE (registry, limits, device keys, voids),
 * ORACLE_ROLE (settlements, corrections).
 * @dev Storage for the settlement hot path (docs/CONTRACTS.md): a steady settlement reads the
 * facility word (owner | current vintage | suspended | pending-limits | cap) and reads and writes one
 * batch word, that of the current vintage (owner position | issued | taken | nextWindowStart). The
 * owner's balance of a batch lives in the batch word ("position"): only the owner is ever minted
 * to, and the owner never changes once the facility settled. A negative position is the facility's
 * deficit: while there is one, the owner holds none of the facility's batches (burns drain them
 * first, and transfers to or from the owner are refused), so one signed field serves both.
 */
contract CreditLedger is ICreditLedger, IERC1155MetadataURI, IERC1155Errors, AccessControl, Pausable, EIP712, Nonces {
    /// @notice Role that registers, suspends and re-baselines facilities, records device keys and voids.
    bytes32 public constant REGULATOR_ROLE = keccak256("REGULATOR_ROLE");
    /// @notice Role that settles windows and corrections.
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    /* solhint-disable gas-small-strings */
    /// @notice EIP-712 type of a signed retirement request.
    bytes32 public constant RETIRE_TYPEHASH = keccak256(
        "Retire(address holder,uint256[] batchIds,uint256[] amounts,string beneficiary,string reason,uint256 nonce,uint256 deadline)"
    );
    /* solhint-enable gas-small-strings */
    /// @notice Longest beneficiary or reason accepted, in bytes.
    uint256 public constant MAX_TEXT_LENGTH = 256;
    /// @notice Most batches one retirement may take.
    uint256 public constant MAX_RETIRE_BATCHES = 32;
    /// @notice Longest facility or device id accepted, in bytes.
    uint256 public constant MAX_ID_LENGTH = 64;
    // Immutables named as the getters clients call (windowSeconds(), metadataRenderer()).
    /* solhint-disable immutable-vars-naming */
    /// @notice The fixed window length, in seconds.
    uint64 public immutable windowSeconds;
    /// @notice Renders {uri} (deployed by the constructor).
    CreditLedgerMetadata public immutable metadataRenderer;
    /* solhint-enable immutable-vars-naming */

    /// @dev Facility word: owner (0-159) | current vintage yyyymm (160-179) | suspended (180) |
    /// limits change pending (181) | cap in grams per window (182-237).
    uint256 private constant VINTAGE_SHIFT = 160;
    uint256 private constant MASK20 = (1 << 20) - 1;
    uint256 private constant SUSPENDED_BIT = 1 << 180;
    uint256 private constant PENDING_BIT = 1 << 181;
    uint256 private constant CAP_SHIFT = 182;
    uint256 private constant MASK56 = (1 << 56) - 1;
    /// @dev Batch word: owner position int64 (0-63) | issued (64-127) | taken = retired + burned
    /// (128-191) | facility's next window start (192-255; meaningful in the current batch only).
    uint256 private constant ISSUED_SHIFT = 64;
    uint256 private constant TAKEN_SHIFT = 128;
    uint256 private constant NEXT_SHIFT = 192;
    uint256 private constant MASK64 = type(uint64).max;
    /// @dev Token id = facility prefix (key with its low 32 bits cleared) | vintage.
    uint256 private constant PREFIX_MASK = ~uint256(type(uint32).max);
    int256 private constant MAX_ABS_NET = int256(uint256(type(uint64).max >> 1));

    /// @dev Registry data touched outside the steady settlement path.
    struct Meta {
        uint64 firstWindowStart;
        uint32 firstVintage;
        uint32 oldestHeld; // no batch older than this has a non-zero owner position
        uint32 keyLow; // the key's low 32 bits: key = prefix | keyLow
    }

    /// @dev Baseline and export allowance in force from effectiveFrom.
    struct Limits {
        uint96 baselineMgPerHour;
        uint96 exportGPerHour;
        uint64 effectiveFrom;
    }

    /// @dev A regulator's void: authorises corrections of windows in (from - W, settledBefore).
    struct VoidRecord {
        bytes32 facility;
        uint64 from;
        uint64 to;
        uint64 settledBefore;
    }

    struct Retirement {
        address account;
        uint64 retiredAt;
        string beneficiary;
        string reason;
        RetiredPart[] parts;
    }

    uint256 private _totalSupply;
    uint256 private _retirementCount;
    mapping(uint256 prefix => uint256 word) private _facilityWords;
    mapping(uint256 id => uint256 word) private _batchWords;
    mapping(uint256 id => mapping(address account => uint256)) private _balances; // holders other than the owner
    mapping(address account => mapping(address operator => bool)) private _operatorApprovals;
    mapping(uint256 prefix => Meta) private _meta;
    mapping(uint256 prefix => string) private _facilityIds;
    mapping(uint256 prefix => Limits) private _limits;
    mapping(uint256 prefix => Limits) private _pendingLimits;
    mapping(uint256 id => uint256) private _retired;
    mapping(address owner => bytes32[] keys) private _facilitiesOf;
    /// @dev Per settled window with corrections: count (0-31) | cumulative delta int128 (32-159).
    mapping(uint256 prefix => mapping(uint64 windowStart => uint256)) private _corrections;
    mapping(uint256 id => Retirement) private _retirements;
    mapping(bytes32 device => bytes32 key) private _deviceKeys;
    uint256 private _voidCount;
    mapping(uint256 id => VoidRecord) private _voids;

    /**
     * @notice Deploys the ledger and grants the three roles.
     * @param admin holder of DEFAULT_ADMIN_ROLE
     * @param regulator holder of REGULATOR_ROLE
     * @param oracle holder of ORACLE_ROLE
     * @param windowLength the fixed window length in seconds (1 s .. 28 days)
     */
    constructor(address admin, address regulator, address oracle, uint64 windowLength) EIP712("CreditLedger", "1") {
        if (admin == address(0)) revert InvalidRoleHolder(admin);
        if (regulator == address(0)) revert InvalidRoleHolder(regulator);
        if (oracle == address(0)) revert InvalidRoleHolder(oracle);
        if (windowLength == 0 || windowLength > 28 days) revert InvalidWindowLength(windowLength);
        windowSeconds = windowLength;
        metadataRenderer = new CreditLedgerMetadata();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGULATOR_ROLE, regulator);
        _grantRole(ORACLE_ROLE, oracle);
    }

    // =========================================================================================
    // ERC-1155
    // =========================================================================================

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) public view override(AccessControl, IERC165) returns (bool) {
        return interfaceId == type(IERC1155).interfaceId || interfaceId == type(IERC1155MetadataURI).interfaceId
            || super.supportsInterface(interfaceId);
    }

    /// @inheritdoc IERC1155
    function balanceOf(address account, uint256 id) public view returns (uint256) {
        if (account == address(uint160(_facilityWords[id & PREFIX_MASK]))) {
            int256 pos = _position(_batchWords[id]);
            return pos > 0 ? uint256(pos) : 0;
        }
        return _balances[id][account];
    }

    /// @inheritdoc IERC1155
    function balanceOfBatch(address[] calldata accounts, uint256[] calldata ids) external view returns (uint256[] memory out) {
        if (accounts.length != ids.length) revert ERC1155InvalidArrayLength(ids.length, accounts.length);
        out = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) out[i] = balanceOf(accounts[i], ids[i]);
    }

    /// @inheritdoc IERC1155
    function setApprovalForAll(address operator, bool approved) external {
        if (operator == address(0)) revert ERC1155InvalidOperator(operator);
        _operatorApprovals[_msgSender()][operator] = approved;
        emit ApprovalForAll(_msgSender(), operator, approved);
    }

    /// @inheritdoc IERC1155
    function isApprovedForAll(address account, address operator) public view returns (bool) {
        return _operatorApprovals[account][operator];
    }

    /// @inheritdoc IERC1155
    function safeTransferFrom(address from, address to, uint256 id, uint256 value, bytes calldata data) external {
        address operator = _checkTransfer(from, to);
        _move(from, to, id, value);
        emit TransferSingle(operator, from, to, id, value);
        ERC1155Utils.checkOnERC1155Received(operator, from, to, id, value, data);
    }

    /// @inheritdoc IERC1155
    function safeBatchTransferFrom(
        address from,
        address to,
        uint256[] calldata ids,
        uint256[] calldata values,
        bytes calldata data
    ) external {
        if (ids.length != values.length) revert ERC1155InvalidArrayLength(ids.length, values.length);
        address operator = _checkTransfer(from, to);
        for (uint256 i = 0; i < ids.length; ++i) _move(from, to, ids[i], values[i]);
        emit TransferBatch(operator, from, to, ids, values);
        ERC1155Utils.checkOnERC1155BatchReceived(operator, from, to, ids, values, data);
    }

    /**
     * @notice ERC-1155 metadata: a `data:application/json;base64,` URI of the batch's JSON (name,
     * description, decimals 6, properties facilityId / facility / vintage / issued / retired / burned),
     * rendered by {metadataRenderer} (a helper deployed by the constructor, keeping this contract
     * under the 24 KiB code limit).
     * @param id the token id
     * @return the data URI
     */
    function uri(uint256 id) external view returns (string memory) {
        return metadataRenderer.render(batch(id));
    }

    /**
     * @notice Credits in existence (all batches), in grams.
     * @return the total supply
     */
    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    /**
     * @notice Credits of one batch in existence (issued - retired - burned).
     * @param id the token id
     * @return the batch supply
     */
    function totalSupply(uint256 id) external view returns (uint256) {
        uint256 bw = _batchWords[id];
        return ((bw >> ISSUED_SHIFT) & MASK64) - ((bw >> TAKEN_SHIFT) & MASK64);
    }

    // =========================================================================================
    // Registry
    // =========================================================================================

    /// @inheritdoc ICreditLedger
    function registerFacility(
        string calldata facilityId,
        address owner,
        uint256 baselineMgPerHour,
        uint64 firstWindowStart
    ) external onlyRole(REGULATOR_ROLE) returns (bytes32 key) {
        _checkFacilityId(bytes(facilityId));
        if (owner == address(0)) revert InvalidFacilityOwner(owner);
        key = keccak256(bytes(facilityId));
        uint256 prefix = uint256(key) & PREFIX_MASK;
        if (_facilityWords[prefix] != 0) revert FacilityAlreadyRegistered(key);
        if (firstWindowStart % windowSeconds != 0) revert MisalignedWindow(key, firstWindowStart);
        Limits memory lim = Limits(SafeCast.toUint96(baselineMgPerHour), 0, firstWindowStart);
        uint256 cap = _cap(key, lim);
        _facilityWords[prefix] = uint256(uint160(owner)) | (cap << CAP_SHIFT);
        _meta[prefix] = Meta(firstWindowStart, 0, 0, uint32(uint256(key)));
        _facilityIds[prefix] = facilityId;
        _limits[prefix] = lim;
        _facilitiesOf[owner].push(key);
        emit FacilityRegistered(key, facilityId, owner, baselineMgPerHour, firstWindowStart);
        emit CapChanged(key, cap, firstWindowStart);
        // Mints to the owner skip the receiver hook (a rejecting owner would block every batch):
        // a contract owner's acceptance of ERC-1155 is checked here, once.
        ERC1155Utils.checkOnERC1155Received(_msgSender(), address(0), owner, 0, 0, "");
    }

    /// @inheritdoc ICreditLedger
    function setFacilitySuspended(bytes32 key, bool suspended) external onlyRole(REGULATOR_ROLE) {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _registered(key);
        if ((fw & SUSPENDED_BIT != 0) == suspended) return;
        _facilityWords[prefix] = fw ^ SUSPENDED_BIT;
        if (suspended) emit FacilitySuspended(key);
        else emit FacilityReinstated(key);
    }

    /// @inheritdoc ICreditLedger
    function setBaseline(bytes32 key, uint256 baselineMgPerHour, uint64 effectiveFrom) external onlyRole(REGULATOR_ROLE) {
        Limits memory lim = _nextLimits(key, effectiveFrom);
        lim.baselineMgPerHour = SafeCast.toUint96(baselineMgPerHour);
        _scheduleLimits(key, lim);
        emit BaselineChanged(key, baselineMgPerHour, effectiveFrom);
    }

    /// @inheritdoc ICreditLedger
    function setExportAllowance(bytes32 key, uint256 gramsPerHour, uint64 effectiveFrom) external onlyRole(REGULATOR_ROLE) {
        Limits memory lim = _nextLimits(key, effectiveFrom);
        lim.exportGPerHour = SafeCast.toUint96(gramsPerHour);
        _scheduleLimits(key, lim);
        emit ExportAllowanceChanged(key, gramsPerHour, effectiveFrom);
    }

    /// @inheritdoc ICreditLedger
    function setFacilityOwner(bytes32 key, address newOwner) external onlyRole(REGULATOR_ROLE) {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _unsettled(key);
        address previous = address(uint160(fw));
        if (newOwner == previous) return;
        if (newOwner == address(0)) revert InvalidFacilityOwner(newOwner);
        _removeFacilityOf(previous, key);
        _facilitiesOf[newOwner].push(key);
        _facilityWords[prefix] = (fw & ~uint256(type(uint160).max)) | uint256(uint160(newOwner));
        emit FacilityOwnerChanged(key, previous, newOwner);
        ERC1155Utils.checkOnERC1155Received(_msgSender(), address(0), newOwner, 0, 0, "");
    }

    /// @inheritdoc ICreditLedger
    function deregisterFacility(bytes32 key) external onlyRole(REGULATOR_ROLE) {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _unsettled(key);
        _removeFacilityOf(address(uint160(fw)), key);
        delete _facilityWords[prefix];
        delete _meta[prefix];
        delete _facilityIds[prefix];
        delete _limits[prefix];
        delete _pendingLimits[prefix];
        emit FacilityDeregistered(key);
    }

    /// @inheritdoc ICreditLedger
    function setDeviceKey(string calldata deviceId, bytes32 publicKey) external onlyRole(REGULATOR_ROLE) {
        uint256 length = bytes(deviceId).length;
        if (length == 0 || length > MAX_ID_LENGTH) revert InvalidDeviceRecord();
        bytes32 device = keccak256(bytes(deviceId));
        bytes32 previous = _deviceKeys[device];
        if (previous == publicKey) return;
        _deviceKeys[device] = publicKey;
        emit DeviceKeySet(device, deviceId, publicKey, previous);
    }

    /// @inheritdoc ICreditLedger
    function voidReadings(
        bytes32 key,
        string calldata deviceId,
        uint64 from,
        uint64 to,
        string calldata reason
    ) external onlyRole(REGULATOR_ROLE) returns (uint256 id) {
        uint256 length = bytes(deviceId).length;
        uint256 reasonLength = bytes(reason).length;
        if (length == 0 || length > MAX_ID_LENGTH || from >= to || reasonLength == 0 || reasonLength > MAX_TEXT_LENGTH) {
            revert InvalidDeviceRecord();
        }
        (uint64 next, ) = _health(uint256(key) & PREFIX_MASK, _registered(key));
        id = ++_voidCount;
        _voids[id] = VoidRecord(key, from, to, next);
        emit ReadingsVoided(id, key, keccak256(bytes(deviceId)), deviceId, from, to, next, reason);
    }

    // =========================================================================================
    // Settlement and corrections
    // =========================================================================================

    /// @inheritdoc ICreditLedger
    function settle(SettlementInput calldata input) external onlyRole(ORACLE_ROLE) whenNotPaused {
        _totalSupply = _settle(input, _totalSupply, false);
    }

    /// @inheritdoc ICreditLedger
    function settleBatch(SettlementInput[] calldata inputs) external onlyRole(ORACLE_ROLE) whenNotPaused {
        uint256 supply = _totalSupply;
        uint256 n = inputs.length;
        for (uint256 i = 0; i < n; ) {
            supply = _settle(inputs[i], supply, true);
            unchecked {
                ++i;
            }
        }
        _totalSupply = supply;
    }

    /// @inheritdoc ICreditLedger
    function settleCorrections(CorrectionInput[] calldata inputs) external onlyRole(ORACLE_ROLE) whenNotPaused {
        uint256 supply = _totalSupply;
        for (uint256 i = 0; i < inputs.length; ++i) supply = _correct(inputs[i], supply);
        _totalSupply = supply;
    }

    // =========================================================================================
    // Retirement
    // =========================================================================================

    /// @inheritdoc ICreditLedger
    function retire(
        uint256[] calldata batchIds,
        uint256[] calldata amounts,
        string calldata beneficiary,
        string calldata reason
    ) external whenNotPaused returns (uint256 id) {
        return _retire(_msgSender(), batchIds, amounts, beneficiary, reason);
    }

    /// @inheritdoc ICreditLedger
    function retireWithSig(
        address holder,
        uint256[] calldata batchIds,
        uint256[] calldata amounts,
        string calldata beneficiary,
        string calldata reason,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external whenNotPaused returns (uint256 id) {
        if (block.timestamp > deadline) revert RetirementSignatureExpired(deadline);
        _useCheckedNonce(holder, nonce);
        bytes32 structHash = keccak256(
            abi.encode(
                RETIRE_TYPEHASH,
                holder,
                keccak256(abi.encodePacked(batchIds)),
                keccak256(abi.encodePacked(amounts)),
                keccak256(bytes(beneficiary)),
                keccak256(bytes(reason)),
                nonce,
                deadline
            )
        );
        if (!SignatureChecker.isValidSignatureNow(holder, _hashTypedDataV4(structHash), signature)) {
            revert InvalidRetirementSignature(holder);
        }
        return _retire(holder, batchIds, amounts, beneficiary, reason);
    }

    // =========================================================================================
    // Admin
    // =========================================================================================

    /// @inheritdoc ICreditLedger
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @inheritdoc ICreditLedger
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // =========================================================================================
    // Views
    // =========================================================================================

    /// @inheritdoc ICreditLedger
    function facility(bytes32 key) external view returns (FacilityInfo memory info) {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _facilityWords[prefix];
        Meta memory m = _meta[prefix];
        Limits memory cur = _limits[prefix];
        Limits memory p = _pendingLimits[prefix];
        (uint64 next, int256 pos) = _health(prefix, fw);
        info = FacilityInfo({
            facilityId: _facilityIds[prefix],
            owner: address(uint160(fw)),
            suspended: fw & SUSPENDED_BIT != 0,
            firstWindowStart: m.firstWindowStart,
            nextWindowStart: next,
            firstVintage: m.firstVintage,
            currentVintage: uint32((fw >> VINTAGE_SHIFT) & MASK20),
            baselineMgPerHour: cur.baselineMgPerHour,
            exportAllowanceGPerHour: cur.exportGPerHour,
            limitsEffectiveFrom: cur.effectiveFrom,
            capGramsPerWindow: (fw >> CAP_SHIFT) & MASK56,
            limitsPending: fw & PENDING_BIT != 0,
            pendingBaselineMgPerHour: p.baselineMgPerHour,
            pendingExportAllowanceGPerHour: p.exportGPerHour,
            pendingEffectiveFrom: p.effectiveFrom,
            deficit: pos < 0 ? uint256(-pos) : 0
        });
    }

    /// @inheritdoc ICreditLedger
    function facilitiesOf(address owner) external view returns (bytes32[] memory keys) {
        return _facilitiesOf[owner];
    }

    /// @inheritdoc ICreditLedger
    function batch(uint256 id) public view returns (BatchInfo memory info) {
        uint256 prefix = id & PREFIX_MASK;
        uint32 v = uint32(id);
        uint256 fw = _facilityWords[prefix];
        Meta memory m = _meta[prefix];
        uint32 cur = uint32((fw >> VINTAGE_SHIFT) & MASK20);
        if (cur == 0 || v < m.firstVintage || v > cur || !_validVintage(v)) revert BatchNotFound(id);
        uint256 bw = _batchWords[id];
        uint256 issued = (bw >> ISSUED_SHIFT) & MASK64;
        uint256 taken = (bw >> TAKEN_SHIFT) & MASK64;
        uint256 retired = _retired[id];
        int256 pos = _position(bw);
        info = BatchInfo({
            id: id,
            facility: bytes32(prefix | m.keyLow),
            facilityId: _facilityIds[prefix],
            vintage: v,
            issued: issued,
            retired: retired,
            burned: taken - retired,
            supply: issued - taken,
            ownerBalance: pos > 0 ? uint256(pos) : 0
        });
    }

    /// @inheritdoc ICreditLedger
    function batchesOf(bytes32 key) external view returns (uint256[] memory ids) {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint32 cur = uint32((_facilityWords[prefix] >> VINTAGE_SHIFT) & MASK20);
        if (cur == 0) return ids;
        uint32 first = _meta[prefix].firstVintage;
        uint256 n = (cur / 100 - first / 100) * 12 + (cur % 100) - (first % 100) + 1;
        ids = new uint256[](n);
        uint32 v = first;
        for (uint256 i = 0; i < n; ++i) {
            ids[i] = prefix | v;
            v = _nextVintage(v);
        }
    }

    /**
     * @notice The token id of a facility's batch of a vintage.
     * @param key the facility key
     * @param vintage year * 100 + month
     * @return the token id
     */
    function batchId(bytes32 key, uint32 vintage) external pure returns (uint256) {
        return (uint256(key) & PREFIX_MASK) | vintage;
    }

    /**
     * @notice The vintage (UTC year * 100 + month) of a time.
     * @param time UNIX seconds
     * @return vintage e.g. 202601
     */
    function vintageOf(uint64 time) external pure returns (uint32 vintage) {
        return _vintage(time);
    }

    /// @inheritdoc ICreditLedger
    function retirement(uint256 id) external view returns (RetirementInfo memory info) {
        Retirement storage r = _retirements[id];
        if (r.account == address(0)) revert RetirementNotFound(id);
        uint256 amount = 0;
        for (uint256 i = 0; i < r.parts.length; ++i) amount += r.parts[i].amount;
        info = RetirementInfo({
            id: id,
            account: r.account,
            retiredAt: r.retiredAt,
            amount: amount,
            beneficiary: r.beneficiary,
            reason: r.reason,
            parts: r.parts
        });
    }

    /// @inheritdoc ICreditLedger
    function retirementCount() external view returns (uint256 count) {
        return _retirementCount;
    }

    /// @inheritdoc ICreditLedger
    function deviceKey(bytes32 device) external view returns (bytes32 publicKey) {
        return _deviceKeys[device];
    }

    /**
     * @notice Corrections applied to a settled window so far and their cumulative delta.
     * @param key the facility key
     * @param windowStart the window
     * @return count corrections applied
     * @return cumulativeDelta their sum, in grams
     */
    function corrections(bytes32 key, uint64 windowStart) external view returns (uint32 count, int256 cumulativeDelta) {
        uint256 rec = _corrections[uint256(key) & PREFIX_MASK][windowStart];
        return (uint32(rec), int256(int128(uint128(rec >> 32))));
    }

    // =========================================================================================
    // Internals: settlement
    // =========================================================================================

    /// @dev Settles one entry against the running supply; returns the new supply. Steady path: one
    /// SLOAD of the facility word, one SLOAD and one SSTORE of the current batch word, one
    /// {TransferSingle} and one {WindowSettled}.
    function _settle(SettlementInput calldata s, uint256 supply, bool skipSettled) private returns (uint256) {
        bytes32 key = s.facility;
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _facilityWords[prefix];
        address owner = address(uint160(fw));
        if (owner == address(0)) revert FacilityNotRegistered(key);
        uint32 cur = uint32((fw >> VINTAGE_SHIFT) & MASK20);
        uint256 bw;
        uint64 next;
        if (cur != 0) {
            bw = _batchWords[prefix | cur];
            next = uint64(bw >> NEXT_SHIFT);
        } else {
            next = _meta[prefix].firstWindowStart;
        }
        uint64 start = s.windowStart;
        if (start != next) {
            if (start > next) revert WindowOutOfOrder(key, next, start);
            if (!skipSettled) revert WindowAlreadySettled(key, start);
            emit SettlementSkipped(key, start);
            return supply;
        }
        uint64 end = start + windowSeconds;
        if (end > block.timestamp) revert WindowNotEnded(key, end, block.timestamp);
        if (fw & PENDING_BIT != 0) fw = _applyPending(key, prefix, fw, start);
        int256 net = s.netGrams;
        uint256 cap = (fw >> CAP_SHIFT) & MASK56;
        if (net > int256(cap)) revert NetAboveCap(key, net, cap);
        if (net < -MAX_ABS_NET) revert NetOutOfRange(key, net);
        uint32 v = _vintage(start);
        if (v != cur) bw = _openBatch(prefix, fw, cur, bw, v);
        uint256 id = prefix | v;

        uint256 minted = 0;
        uint256 firstSerial = 0;
        int256 pos = _position(bw);
        if (net > 0) {
            int256 np = pos + net;
            if (np > MAX_ABS_NET) revert TotalOutOfRange(key);
            if (np > 0) {
                minted = pos > 0 ? uint256(net) : uint256(np);
                uint256 issued = (bw >> ISSUED_SHIFT) & MASK64;
                firstSerial = issued + 1;
                if (issued + minted > MASK64) revert TotalOutOfRange(key);
                supply += minted;
                emit TransferSingle(_msgSender(), address(0), owner, id, minted);
            }
            unchecked {
                // position and issued change in place; issued + minted < 2^64 was checked above
                bw = (bw & ~MASK64) + uint256(uint64(int64(np))) + (minted << ISSUED_SHIFT);
            }
        } else if (net < 0) {
            uint256 burned;
            (bw, burned) = _burnFromOwner(key, prefix, owner, id, bw, uint256(-net));
            supply -= burned;
        }
        bw = (bw & ~(MASK64 << NEXT_SHIFT)) | (uint256(end) << NEXT_SHIFT);
        _batchWords[id] = bw;
        pos = _position(bw);
        emit WindowSettled(key, start, net, minted, firstSerial, pos < 0 ? uint256(-pos) : 0, s.evidenceRoot);
        return supply;
    }

    /// @dev Opens the batch of vintage `v` (months are contiguous: window length <= 28 days): carries
    /// a deficit over from the previous current batch, writes the facility word, returns the new word.
    function _openBatch(uint256 prefix, uint256 fw, uint32 cur, uint256 bw, uint32 v) private returns (uint256) {
        int256 pos = _position(bw);
        uint256 fresh = 0;
        if (cur == 0) {
            Meta storage m = _meta[prefix];
            m.firstVintage = v;
            m.oldestHeld = v;
        } else if (pos < 0) {
            // the deficit moves to the new current batch; the old one keeps owner position 0
            _batchWords[prefix | cur] = bw & ~MASK64;
            fresh = uint256(uint64(int64(pos)));
        }
        _facilityWords[prefix] = (fw & ~(MASK20 << VINTAGE_SHIFT)) | (uint256(v) << VINTAGE_SHIFT);
        emit BatchCreated(prefix | v);
        return fresh;
    }

    /// @dev Burns `amount` from the owner's holdings of the facility's batches, oldest vintage first,
    /// ending with the current batch (whose word `bw` is in memory and returned, not written); what
    /// they cannot cover becomes (or deepens) the deficit in the current batch's position.
    function _burnFromOwner(
        bytes32 key,
        uint256 prefix,
        address owner,
        uint256 currentId,
        uint256 bw,
        uint256 amount
    ) private returns (uint256, uint256 burned) {
        int256 pos = _position(bw);
        if (pos >= 0) {
            Meta storage m = _meta[prefix];
            uint32 v = m.oldestHeld;
            uint32 cur = uint32(currentId);
            while (v < cur && burned < amount) {
                uint256 id = prefix | v;
                uint256 w = _batchWords[id];
                uint256 held = uint256(_position(w));
                uint256 take = _min(held, amount - burned);
                if (take != 0) {
                    _batchWords[id] = _take(w, take) - take; // position -= take (held >= take)
                    _emitBurn(owner, id, take, w);
                    burned += take;
                }
                if (take == held) v = _nextVintage(v);
            }
            if (v != m.oldestHeld) m.oldestHeld = v;
            uint256 take2 = _min(uint256(pos), amount - burned);
            if (take2 != 0) {
                _emitBurn(owner, currentId, take2, bw);
                bw = _take(bw, take2);
                burned += take2;
            }
            pos -= int256(take2);
        }
        // what is left is deficit: the owner now holds none of the facility's batches
        int256 np = pos - int256(amount - burned);
        if (np < -MAX_ABS_NET) revert TotalOutOfRange(key);
        bw = (bw & ~MASK64) | uint256(uint64(int64(np)));
        return (bw, burned);
    }

    /// @dev Adds `amount` to a batch word's taken counter (serials are taken in order).
    function _take(uint256 w, uint256 amount) private pure returns (uint256) {
        return w + (amount << TAKEN_SHIFT); // taken + amount <= issued < 2^64
    }

    function _emitBurn(address owner, uint256 id, uint256 amount, uint256 w) private {
        emit TransferSingle(_msgSender(), owner, address(0), id, amount);
        emit CreditsBurned(id, owner, amount, ((w >> TAKEN_SHIFT) & MASK64) + 1);
    }

    /// @dev Applies one correction; see {settleCorrections}.
    function _correct(CorrectionInput calldata c, uint256 supply) private returns (uint256) {
        bytes32 key = c.facility;
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _registered(key);
        address owner = address(uint160(fw));
        uint64 start = c.windowStart;
        uint32 cur = uint32((fw >> VINTAGE_SHIFT) & MASK20);
        uint256 currentId = prefix | cur;
        uint256 bw = _batchWords[currentId];
        uint64 next = cur == 0 ? _meta[prefix].firstWindowStart : uint64(bw >> NEXT_SHIFT);
        if (start >= next || start < _meta[prefix].firstWindowStart) revert CorrectionOfUnsettledWindow(key, start, next);
        if (start % windowSeconds != 0) revert MisalignedWindow(key, start);
        VoidRecord storage vr = _voids[c.voidId];
        if (vr.facility != key || start + windowSeconds <= vr.from || start >= vr.settledBefore) {
            revert CorrectionNotAuthorized(key, start, c.voidId);
        }
        uint256 reasonLength = bytes(c.reason).length;
        if (reasonLength == 0) revert MissingCorrectionReason();
        if (reasonLength > MAX_TEXT_LENGTH) revert RetirementTextTooLong(reasonLength, MAX_TEXT_LENGTH);
        uint256 rec = _corrections[prefix][start];
        uint32 count = uint32(rec);
        if (c.seq <= count) {
            emit CorrectionSkipped(key, start, c.seq);
            return supply;
        }
        if (c.seq != count + 1) revert CorrectionOutOfOrder(key, start, count + 1, c.seq);
        int256 delta = c.deltaGrams;
        if (delta > MAX_ABS_NET || delta < -MAX_ABS_NET) revert NetOutOfRange(key, delta);
        int256 cumulative = int256(int128(uint128(rec >> 32))) + delta;
        uint256 cap = (fw >> CAP_SHIFT) & MASK56;
        if (cumulative > int256(cap)) revert CorrectionAboveCap(key, start, cumulative, cap);
        if (cumulative < type(int128).min) revert NetOutOfRange(key, delta);
        _corrections[prefix][start] = uint256(c.seq) | (uint256(uint128(int128(cumulative))) << 32);

        uint256 minted = 0;
        uint256 firstSerial = 0;
        uint256 burned = 0;
        int256 pos = _position(bw);
        if (delta > 0) {
            uint256 amount = uint256(delta);
            if (pos < 0) {
                uint256 paid = _min(amount, uint256(-pos));
                pos += int256(paid);
                minted = amount - paid;
                bw = (bw & ~MASK64) | uint256(uint64(int64(pos)));
            } else {
                minted = amount;
            }
            uint256 target = prefix | _vintage(start);
            if (target == currentId) {
                (bw, firstSerial) = _mintInto(key, bw, minted);
            } else {
                uint256 tw;
                (tw, firstSerial) = _mintInto(key, _batchWords[target], minted);
                _batchWords[target] = tw;
                Meta storage m = _meta[prefix];
                if (minted != 0 && uint32(target) < m.oldestHeld) m.oldestHeld = uint32(target);
            }
            if (minted != 0) {
                supply += minted;
                emit TransferSingle(_msgSender(), address(0), owner, target, minted);
            }
        } else if (delta < 0) {
            (bw, burned) = _burnFromOwner(key, prefix, owner, currentId, bw, uint256(-delta));
            supply -= burned;
        }
        _batchWords[currentId] = bw;
        pos = _position(bw);
        emit CorrectionSettled(key, start, c.seq, c.voidId, delta, minted, firstSerial, burned, pos < 0 ? uint256(-pos) : 0, c.evidenceRoot, c.reason);
        return supply;
    }

    /// @dev Adds `amount` to a batch word's owner position and issued counter; returns the word and
    /// the first serial (0 when amount is 0).
    function _mintInto(bytes32 key, uint256 w, uint256 amount) private pure returns (uint256, uint256 firstSerial) {
        if (amount == 0) return (w, 0);
        uint256 issued = (w >> ISSUED_SHIFT) & MASK64;
        int256 np = _position(w) + int256(amount);
        if (issued + amount > MASK64 || np > MAX_ABS_NET) revert TotalOutOfRange(key);
        w = (w & ~MASK64 & ~(MASK64 << ISSUED_SHIFT)) | uint256(uint64(int64(np))) | ((issued + amount) << ISSUED_SHIFT);
        return (w, issued + 1);
    }

    // =========================================================================================
    // Internals: limits
    // =========================================================================================

    /// @dev The cap in grams per window for these limits; reverts when it leaves 56 bits.
    function _cap(bytes32 key, Limits memory lim) private view returns (uint256 cap) {
        cap = ((uint256(lim.baselineMgPerHour) + uint256(lim.exportGPerHour) * 1000) * windowSeconds) / 3_600_000;
        // mg/h * s / (3600 s/h * 1000 mg/g) = g; the export allowance is g/h, hence * 1000 first
        if (cap > MASK56) revert CapOutOfRange(key, cap);
    }

    /// @dev The limits a change at `effectiveFrom` starts from (pending ones if any), after checks.
    function _nextLimits(bytes32 key, uint64 effectiveFrom) private returns (Limits memory) {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _registered(key);
        (uint64 next, ) = _health(prefix, fw);
        if (effectiveFrom < next) revert BaselineEffectiveTooEarly(key, effectiveFrom, next);
        if (effectiveFrom % windowSeconds != 0) revert MisalignedWindow(key, effectiveFrom);
        if (fw & PENDING_BIT != 0) {
            Limits memory p = _pendingLimits[prefix];
            // A pending change already due (no settlement reached it yet) is folded in first.
            if (p.effectiveFrom <= next) {
                fw = _applyPending(key, prefix, fw, next);
            } else if (p.effectiveFrom != effectiveFrom) {
                revert LimitsChangePending(key, p.effectiveFrom);
            } else {
                return p;
            }
        }
        Limits memory lim = _limits[prefix];
        lim.effectiveFrom = effectiveFrom;
        return lim;
    }

    /// @dev Applies limits now (effectiveFrom == next window) or stores them as the pending change.
    function _scheduleLimits(bytes32 key, Limits memory lim) private {
        uint256 prefix = uint256(key) & PREFIX_MASK;
        uint256 fw = _facilityWords[prefix];
        uint256 cap = _cap(key, lim);
        (uint64 next, ) = _health(prefix, fw);
        if (lim.effectiveFrom == next) {
            _limits[prefix] = lim;
            delete _pendingLimits[prefix];
            _facilityWords[prefix] = (fw & ~(MASK56 << CAP_SHIFT) & ~PENDING_BIT) | (cap << CAP_SHIFT);
            emit CapChanged(key, cap, lim.effectiveFrom);
        } else {
            _pendingLimits[prefix] = lim;
            _facilityWords[prefix] = fw | PENDING_BIT;
        }
    }

    /// @dev If the pending change is effective at `start`, makes it current; returns the facility word.
    function _applyPending(bytes32 key, uint256 prefix, uint256 fw, uint64 start) private returns (uint256) {
        Limits memory p = _pendingLimits[prefix];
        if (p.effectiveFrom > start) return fw;
        uint256 cap = _cap(key, p);
        _limits[prefix] = p;
        delete _pendingLimits[prefix];
        fw = (fw & ~(MASK56 << CAP_SHIFT) & ~PENDING_BIT) | (cap << CAP_SHIFT);
        _facilityWords[prefix] = fw;
        emit CapChanged(key, cap, p.effectiveFrom);
        return fw;
    }

    // =========================================================================================
    // Internals: transfers and retirements
    // =========================================================================================

    /// @dev Common transfer checks; returns the operator.
    function _checkTransfer(address from, address to) private view whenNotPaused returns (address operator) {
        operator = _msgSender();
        if (to == address(0)) revert ERC1155InvalidReceiver(to);
        if (from == address(0)) revert ERC1155InvalidSender(from);
        if (from != operator && !isApprovedForAll(from, operator)) revert ERC1155MissingApprovalForAll(operator, from);
    }

    /// @dev Moves `value` of batch `id` from `from` to `to`, enforcing suspension and the owner's
    /// deficit/lag freeze.
    function _move(address from, address to, uint256 id, uint256 value) private {
        uint256 prefix = id & PREFIX_MASK;
        uint256 fw = _facilityWords[prefix];
        address owner = address(uint160(fw));
        if (owner == address(0)) revert BatchNotFound(id);
        if (fw & SUSPENDED_BIT != 0) revert FacilityIsSuspended(_keyOf(prefix));
        if (from == owner || to == owner) _requireHealthy(prefix, fw);
        _debit(owner, from, id, value);
        if (to == owner) {
            uint256 w = _batchWords[id];
            int256 np = _position(w) + int256(value);
            if (np > MAX_ABS_NET) revert TotalOutOfRange(_keyOf(prefix));
            _batchWords[id] = (w & ~MASK64) | uint256(uint64(int64(np)));
            Meta storage m = _meta[prefix];
            if (value != 0 && uint32(id) < m.oldestHeld) m.oldestHeld = uint32(id);
        } else {
            _balances[id][to] += value;
        }
    }

    /// @dev Takes `value` of batch `id` from `from`'s balance (owner position or plain balance).
    function _debit(address owner, address from, uint256 id, uint256 value) private {
        if (from == owner) {
            uint256 w = _batchWords[id];
            int256 pos = _position(w);
            uint256 held = pos > 0 ? uint256(pos) : 0;
            if (held < value) revert ERC1155InsufficientBalance(from, held, value, id);
            _batchWords[id] = w - value; // value <= held: only the position bits change
        } else {
            uint256 held = _balances[id][from];
            if (held < value) revert ERC1155InsufficientBalance(from, held, value, id);
            unchecked {
                _balances[id][from] = held - value;
            }
        }
    }

    /// @dev Burns, records and emits a retirement. Shared by {retire} and {retireWithSig}.
    function _retire(
        address holder,
        uint256[] calldata ids,
        uint256[] calldata amounts,
        string calldata beneficiary,
        string calldata reason
    ) private returns (uint256 id) {
        uint256 n = ids.length;
        if (n != amounts.length) revert ERC1155InvalidArrayLength(n, amounts.length);
        if (n == 0 || n > MAX_RETIRE_BATCHES) revert InvalidRetirementBatchCount(n);
        if (bytes(beneficiary).length == 0) revert MissingBeneficiary();
        if (bytes(beneficiary).length > MAX_TEXT_LENGTH) {
            revert RetirementTextTooLong(bytes(beneficiary).length, MAX_TEXT_LENGTH);
        }
        if (bytes(reason).length > MAX_TEXT_LENGTH) revert RetirementTextTooLong(bytes(reason).length, MAX_TEXT_LENGTH);
        id = ++_retirementCount;
        Retirement storage r = _retirements[id];
        r.account = holder;
        r.retiredAt = uint64(block.timestamp);
        r.beneficiary = beneficiary;
        r.reason = reason;
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 bid = ids[i];
            uint256 amount = amounts[i];
            if (amount == 0 || amount > MASK64) revert InvalidRetirementAmount(amount);
            uint256 prefix = bid & PREFIX_MASK;
            uint256 fw = _facilityWords[prefix];
            address owner = address(uint160(fw));
            if (owner == address(0)) revert BatchNotFound(bid);
            if (fw & SUSPENDED_BIT != 0) revert FacilityIsSuspended(_keyOf(prefix));
            if (holder == owner) _requireHealthy(prefix, fw);
            _debit(owner, holder, bid, amount);
            uint256 w = _batchWords[bid];
            uint256 firstSerial = ((w >> TAKEN_SHIFT) & MASK64) + 1;
            _batchWords[bid] = _take(w, amount);
            _retired[bid] += amount;
            r.parts.push(RetiredPart(bid, uint64(amount), uint64(firstSerial)));
            total += amount;
            emit TransferSingle(_msgSender(), holder, address(0), bid, amount);
            emit BatchRetired(id, bid, amount, firstSerial);
        }
        _totalSupply -= total;
        emit CreditsRetired(id, holder, total, beneficiary, reason);
    }

    /// @dev Reverts when the facility is in deficit or its settlement lags more than two windows.
    function _requireHealthy(uint256 prefix, uint256 fw) private view {
        (uint64 next, int256 pos) = _health(prefix, fw);
        if (pos < 0) revert FacilityInDeficit(_keyOf(prefix), uint256(-pos));
        if (uint256(next) + 3 * uint256(windowSeconds) <= block.timestamp) revert FacilityLagging(_keyOf(prefix), next);
    }

    /// @dev The facility's next window start and its current owner position (negative: deficit).
    function _health(uint256 prefix, uint256 fw) private view returns (uint64 next, int256 pos) {
        uint32 cur = uint32((fw >> VINTAGE_SHIFT) & MASK20);
        if (cur == 0) return (_meta[prefix].firstWindowStart, 0);
        uint256 bw = _batchWords[prefix | cur];
        return (uint64(bw >> NEXT_SHIFT), _position(bw));
    }

    // =========================================================================================
    // Internals: helpers
    // =========================================================================================

    /// @dev The signed owner position of a batch word.
    function _position(uint256 w) private pure returns (int256) {
        return int256(int64(uint64(w)));
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    /// @dev year * 100 + month (UTC) of a UNIX time (civil-from-days, H. Hinnant; times >= 1970).
    function _vintage(uint64 time) private pure returns (uint32) {
        unchecked {
            uint256 z = uint256(time) / 86400 + 719468;
            uint256 era = z / 146097;
            uint256 doe = z - era * 146097;
            uint256 yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
            uint256 doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            uint256 mp = (5 * doy + 2) / 153;
            uint256 m = mp < 10 ? mp + 3 : mp - 9;
            uint256 y = yoe + era * 400 + (m < 3 ? 1 : 0);
            return uint32(y * 100 + m);
        }
    }

    function _nextVintage(uint32 v) private pure returns (uint32) {
        return v % 100 == 12 ? (v / 100 + 1) * 100 + 1 : v + 1;
    }

    function _validVintage(uint32 v) private pure returns (bool) {
        uint32 m = v % 100;
        return m >= 1 && m <= 12;
    }

    function _keyOf(uint256 prefix) private view returns (bytes32) {
        return bytes32(prefix | _meta[prefix].keyLow);
    }

    function _checkFacilityId(bytes calldata id) private pure {
        uint256 length = id.length;
        if (length == 0 || length > MAX_ID_LENGTH) revert InvalidFacilityId(length);
        for (uint256 i = 0; i < length; ++i) {
            bytes1 c = id[i];
            bool ok = (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-";
            if (!ok) revert InvalidFacilityId(length);
        }
    }

    function _removeFacilityOf(address owner, bytes32 key) private {
        bytes32[] storage keys = _facilitiesOf[owner];
        uint256 n = keys.length;
        for (uint256 i = 0; i < n; ++i) {
            if (keys[i] == key) {
                keys[i] = keys[n - 1];
                keys.pop();
                return;
            }
        }
    }

    /// @dev The word of a registered facility, or a {FacilityNotRegistered} revert.
    function _registered(bytes32 key) private view returns (uint256 fw) {
        fw = _facilityWords[uint256(key) & PREFIX_MASK];
        if (fw == 0) revert FacilityNotRegistered(key);
    }

    /// @dev The word of a registered facility that has not settled a window yet.
    function _unsettled(bytes32 key) private view returns (uint256 fw) {
        fw = _registered(key);
        if ((fw >> VINTAGE_SHIFT) & MASK20 != 0) revert FacilityHasSettlements(key);
    }
}

