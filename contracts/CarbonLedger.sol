// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ICarbonLedger} from "./ICarbonLedger.sol";

/**
 * @title CarbonLedger
 * @author carbon-mrv contributors
 * @notice One deployable ledger: facility registry, ERC-20 credit token (6 decimals, 1 unit = 1 g CO2e),
 * contiguous exactly-once settlement of (facility, window) nets, and numbered retirements (direct or
 * by EIP-712 signed request). Roles: DEFAULT_ADMIN_ROLE (pause, roles), REGULATOR_ROLE (registry),
 * ORACLE_ROLE (settlement).
 * @dev Storage is packed for the settlement hot path (see docs/CONTRACTS.md): a settled window reads
 * and writes exactly two slots per facility, the facility slot (owner, nextWindowStart, suspended) and
 * the owner's account slot (balance, minted, burned, deficit, 64 bits each), plus the supply once per
 * batch. The total supply is capped at 2^64 - 1 grams, so every 64-bit balance fits.
 */
contract CarbonLedger is ICarbonLedger, IERC20Metadata, IERC20Errors, AccessControl, Pausable, EIP712, Nonces {
    /// @notice Role that registers, suspends and re-baselines facilities.
    bytes32 public constant REGULATOR_ROLE = keccak256("REGULATOR_ROLE");
    /// @notice Role that settles windows.
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    // The EIP-712 type string is fixed by the standard (it cannot fit 32 bytes) and is hashed at
    // compile time, so gas-small-strings does not apply to it.
    /* solhint-disable gas-small-strings */
    /// @notice EIP-712 type of a signed retirement request.
    bytes32 public constant RETIRE_TYPEHASH = keccak256(
        "Retire(address holder,uint256 amount,string beneficiary,string reason,uint256 nonce,uint256 deadline)"
    );
    /* solhint-enable gas-small-strings */
    /// @notice Longest beneficiary or reason accepted, in bytes.
    uint256 public constant MAX_TEXT_LENGTH = 256;
    /// @notice Longest facility id accepted, in bytes.
    uint256 public constant MAX_FACILITY_ID_LENGTH = 64;
    /// @notice Longest device id accepted, in bytes.
    uint256 public constant MAX_DEVICE_ID_LENGTH = 64;

    /// @dev Facility word: owner (bits 0-159) | nextWindowStart (160-223) | suspended (bit 224).
    uint256 private constant NEXT_SHIFT = 160;
    uint256 private constant SUSPENDED_BIT = 1 << 224;
    /// @dev Account word: balance (bits 0-63) | minted (64-127) | burned (128-191) | deficit (192-255).
    /// minted, burned and deficit are the totals of the facility the account owns (if any).
    uint256 private constant MINTED_SHIFT = 64;
    uint256 private constant BURNED_SHIFT = 128;
    uint256 private constant DEFICIT_SHIFT = 192;
    uint256 private constant MASK64 = type(uint64).max;
    int256 private constant MAX_NET = int256(uint256(type(uint64).max));

    /// @dev Touched only by registration and baseline changes.
    struct Baseline {
        uint192 mgPerHour;
        uint64 effectiveFrom;
    }

    /// @dev A retirement record; strings are stored so the record is readable by id.
    struct Retirement {
        address account;
        uint64 retiredAt;
        bytes32 facility;
        uint256 amount;
        string beneficiary;
        string reason;
    }

    uint256 private _totalSupply;
    uint256 private _retirementCount;
    mapping(address account => uint256 word) private _accountWords;
    mapping(address owner => mapping(address spender => uint256)) private _allowances;
    mapping(bytes32 key => uint256 word) private _facilityWords;
    mapping(bytes32 key => Baseline) private _baselines;
    mapping(bytes32 key => uint256) private _retired;
    mapping(address owner => bytes32 key) private _facilityOf;
    /// @dev First window of each facility: it never settled while nextWindowStart is still this.
    mapping(bytes32 key => uint64 start) private _firstWindow;
    mapping(uint256 id => Retirement) private _retirements;
    mapping(address account => uint256[] ids) private _retirementIds;
    /// @dev Touched only by {setDeviceKey}: never read by settlement.
    mapping(bytes32 device => bytes32 key) private _deviceKeys;

    /**
     * @notice Deploys the ledger and grants the three roles.
     * @param admin holder of DEFAULT_ADMIN_ROLE (pause, role management)
     * @param regulator holder of REGULATOR_ROLE
     * @param oracle holder of ORACLE_ROLE
     */
    constructor(address admin, address regulator, address oracle) EIP712("CarbonLedger", "1") {
        if (admin == address(0)) revert InvalidRoleHolder(admin);
        if (regulator == address(0)) revert InvalidRoleHolder(regulator);
        if (oracle == address(0)) revert InvalidRoleHolder(oracle);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGULATOR_ROLE, regulator);
        _grantRole(ORACLE_ROLE, oracle);
    }

    // =========================================================================================
    // ERC-20
    // =========================================================================================

    /**
     * @notice Token name.
     * @return the name
     */
    function name() external pure returns (string memory) {
        return "Carbon Credit";
    }

    /**
     * @notice Token symbol.
     * @return the symbol
     */
    function symbol() external pure returns (string memory) {
        return "tCO2e";
    }

    /**
     * @notice 6 decimals: 1 token = 1 tonne CO2e, 1 base unit = 1 gram.
     * @return 6
     */
    function decimals() external pure returns (uint8) {
        return 6;
    }

    /**
     * @notice Credits in existence, in grams.
     * @return the total supply
     */
    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    /**
     * @notice Credits held by an account, in grams.
     * @param account the holder
     * @return the balance
     */
    function balanceOf(address account) external view returns (uint256) {
        return _accountWords[account] & MASK64;
    }

    /**
     * @notice Remaining allowance of spender over owner's credits.
     * @param owner the holder
     * @param spender the spender
     * @return the allowance
     */
    function allowance(address owner, address spender) external view returns (uint256) {
        return _allowances[owner][spender];
    }

    /**
     * @notice Moves credits from the caller. Requirements: not paused; neither party's facility is
     * suspended; enough balance.
     * @dev Emits {Transfer}.
     * @param to the receiver
     * @param value grams
     * @return true
     */
    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(_msgSender(), to, value);
        return true;
    }

    /**
     * @notice Lets spender move up to value of the caller's credits.
     * @dev Emits {Approval}.
     * @param spender the spender
     * @param value grams (type(uint256).max = unlimited)
     * @return true
     */
    function approve(address spender, uint256 value) external returns (bool) {
        _approve(_msgSender(), spender, value, true);
        return true;
    }

    /**
     * @notice Moves credits on behalf of from, using the caller's allowance. Requirements: as
     * {transfer}, plus enough allowance.
     * @dev Emits {Transfer}.
     * @param from the holder
     * @param to the receiver
     * @param value grams
     * @return true
     */
    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        address spender = _msgSender();
        uint256 current = _allowances[from][spender];
        if (current != type(uint256).max) {
            if (current < value) revert ERC20InsufficientAllowance(spender, current, value);
            unchecked {
                _approve(from, spender, current - value, false);
            }
        }
        _transfer(from, to, value);
        return true;
    }

    // =========================================================================================
    // Registry
    // =========================================================================================

    /// @inheritdoc ICarbonLedger
    function registerFacility(
        string calldata facilityId,
        address owner,
        uint256 baselineMgPerHour,
        uint64 firstWindowStart
    ) external onlyRole(REGULATOR_ROLE) returns (bytes32 key) {
        uint256 length = bytes(facilityId).length;
        if (length == 0 || length > MAX_FACILITY_ID_LENGTH) revert InvalidFacilityId(length);
        if (owner == address(0)) revert InvalidFacilityOwner(owner);
        key = keccak256(bytes(facilityId));
        if (_facilityWords[key] != 0) revert FacilityAlreadyRegistered(key);
        bytes32 existing = _facilityOf[owner];
        if (existing != bytes32(0)) revert OwnerAlreadyHasFacility(owner, existing);
        _facilityWords[key] = uint256(uint160(owner)) | (uint256(firstWindowStart) << NEXT_SHIFT);
        _facilityOf[owner] = key;
        _firstWindow[key] = firstWindowStart;
        _baselines[key] = Baseline({
            mgPerHour: SafeCast.toUint192(baselineMgPerHour),
            effectiveFrom: firstWindowStart
        });
        emit FacilityRegistered(key, facilityId, owner, baselineMgPerHour, firstWindowStart);
    }

    /// @inheritdoc ICarbonLedger
    function setFacilitySuspended(bytes32 key, bool suspended) external onlyRole(REGULATOR_ROLE) {
        uint256 fw = _registered(key);
        if ((fw & SUSPENDED_BIT != 0) == suspended) return;
        _facilityWords[key] = fw ^ SUSPENDED_BIT;
        if (suspended) emit FacilitySuspended(key);
        else emit FacilityReinstated(key);
    }

    /// @inheritdoc ICarbonLedger
    function setBaseline(bytes32 key, uint256 baselineMgPerHour, uint64 effectiveFrom) external onlyRole(REGULATOR_ROLE) {
        uint64 next = uint64(_registered(key) >> NEXT_SHIFT);
        if (effectiveFrom < next) revert BaselineEffectiveTooEarly(key, effectiveFrom, next);
        _baselines[key] = Baseline({mgPerHour: SafeCast.toUint192(baselineMgPerHour), effectiveFrom: effectiveFrom});
        emit BaselineChanged(key, baselineMgPerHour, effectiveFrom);
    }

    /// @inheritdoc ICarbonLedger
    function setFacilityOwner(bytes32 key, address newOwner) external onlyRole(REGULATOR_ROLE) {
        uint256 fw = _unsettled(key);
        address previous = address(uint160(fw));
        if (newOwner == previous) return;
        if (newOwner == address(0)) revert InvalidFacilityOwner(newOwner);
        bytes32 existing = _facilityOf[newOwner];
        if (existing != bytes32(0)) revert OwnerAlreadyHasFacility(newOwner, existing);
        delete _facilityOf[previous];
        _facilityOf[newOwner] = key;
        _facilityWords[key] = (fw & ~uint256(type(uint160).max)) | uint256(uint160(newOwner));
        emit FacilityOwnerChanged(key, previous, newOwner);
    }

    /// @inheritdoc ICarbonLedger
    function deregisterFacility(bytes32 key) external onlyRole(REGULATOR_ROLE) {
        uint256 fw = _unsettled(key);
        delete _facilityOf[address(uint160(fw))];
        delete _facilityWords[key];
        delete _baselines[key];
        delete _firstWindow[key];
        emit FacilityDeregistered(key);
    }

    /// @inheritdoc ICarbonLedger
    function setDeviceKey(string calldata deviceId, bytes32 publicKey) external onlyRole(REGULATOR_ROLE) whenNotPaused {
        uint256 length = bytes(deviceId).length;
        if (length == 0 || length > MAX_DEVICE_ID_LENGTH) revert InvalidDeviceId(length);
        bytes32 device = keccak256(bytes(deviceId));
        bytes32 previous = _deviceKeys[device];
        if (previous == publicKey) return;
        _deviceKeys[device] = publicKey;
        emit DeviceKeySet(device, deviceId, publicKey, previous);
    }

    /// @dev The facility word of a registered facility that has not settled a window yet.
    function _unsettled(bytes32 key) private view returns (uint256 fw) {
        fw = _registered(key);
        uint64 next = uint64(fw >> NEXT_SHIFT);
        if (next != _firstWindow[key]) revert FacilityHasSettlements(key, next);
    }

    // =========================================================================================
    // Settlement
    // =========================================================================================

    /// @inheritdoc ICarbonLedger
    function settle(SettlementInput calldata input) external onlyRole(ORACLE_ROLE) whenNotPaused {
        _storeSupply(_settle(input, _totalSupply, false));
    }

    /// @inheritdoc ICarbonLedger
    function settleBatch(SettlementInput[] calldata inputs) external onlyRole(ORACLE_ROLE) whenNotPaused {
        uint256 supply = _totalSupply;
        uint256 n = inputs.length;
        for (uint256 i = 0; i < n; ) {
            supply = _settle(inputs[i], supply, true);
            unchecked {
                ++i;
            }
        }
        _storeSupply(supply);
    }

    // =========================================================================================
    // Retirement
    // =========================================================================================

    /// @inheritdoc ICarbonLedger
    function retire(
        uint256 amount,
        string calldata beneficiary,
        string calldata reason
    ) external whenNotPaused returns (uint256 id) {
        return _retire(_msgSender(), amount, beneficiary, reason);
    }

    /// @inheritdoc ICarbonLedger
    function retireWithSig(
        address holder,
        uint256 amount,
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
                amount,
                keccak256(bytes(beneficiary)),
                keccak256(bytes(reason)),
                nonce,
                deadline
            )
        );
        if (!SignatureChecker.isValidSignatureNow(holder, _hashTypedDataV4(structHash), signature)) {
            revert InvalidRetirementSignature(holder);
        }
        return _retire(holder, amount, beneficiary, reason);
    }

    // =========================================================================================
    // Admin
    // =========================================================================================

    /// @inheritdoc ICarbonLedger
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @inheritdoc ICarbonLedger
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // =========================================================================================
    // Views
    // =========================================================================================

    /// @inheritdoc ICarbonLedger
    function facility(bytes32 key) external view returns (FacilityInfo memory info) {
        uint256 fw = _facilityWords[key];
        address owner = address(uint160(fw));
        uint256 aw = owner == address(0) ? 0 : _accountWords[owner];
        Baseline memory b = _baselines[key];
        info = FacilityInfo({
            owner: owner,
            nextWindowStart: uint64(fw >> NEXT_SHIFT),
            suspended: fw & SUSPENDED_BIT != 0,
            baselineEffectiveFrom: b.effectiveFrom,
            baselineMgPerHour: b.mgPerHour,
            minted: (aw >> MINTED_SHIFT) & MASK64,
            burned: (aw >> BURNED_SHIFT) & MASK64,
            retired: _retired[key],
            deficit: aw >> DEFICIT_SHIFT
        });
    }

    /// @inheritdoc ICarbonLedger
    function facilityOf(address owner) external view returns (bytes32 key) {
        return _facilityOf[owner];
    }

    /// @inheritdoc ICarbonLedger
    function deviceKey(bytes32 device) external view returns (bytes32 publicKey) {
        return _deviceKeys[device];
    }

    /// @inheritdoc ICarbonLedger
    function retirement(uint256 id) external view returns (RetirementInfo memory info) {
        Retirement storage r = _retirements[id];
        if (r.account == address(0)) revert RetirementNotFound(id);
        info = RetirementInfo({
            id: id,
            account: r.account,
            retiredAt: r.retiredAt,
            facility: r.facility,
            amount: r.amount,
            beneficiary: r.beneficiary,
            reason: r.reason
        });
    }

    /// @inheritdoc ICarbonLedger
    function retirementsOf(address account) external view returns (uint256[] memory ids) {
        return _retirementIds[account];
    }

    /// @inheritdoc ICarbonLedger
    function retirementCount() external view returns (uint256 count) {
        return _retirementCount;
    }

    // =========================================================================================
    // Internals
    // =========================================================================================

    /// @dev Settles one entry against the running supply; returns the new supply. See {settleBatch}.
    /// The hot path: one SLOAD and one SSTORE of the facility word, the same for the owner's account
    /// word, one {WindowSettled} and at most one {Transfer}.
    function _settle(SettlementInput calldata s, uint256 supply, bool skipSettled) private returns (uint256) {
        bytes32 key = s.facility;
        uint64 start = s.windowStart;
        uint64 end = s.windowEnd;
        address owner = _advance(key, start, end, skipSettled);
        if (owner == address(0)) return supply; // already settled, skipped

        int256 net = s.netGrams;
        // |net| < 2^64: no amount below overflows 256 bits; the 64-bit fields are checked.
        if (net > MAX_NET || net < -MAX_NET) revert NetOutOfRange(key, net);
        uint256 aw = _accountWords[owner];
        uint256 deficit = aw >> DEFICIT_SHIFT;
        uint256 minted = 0;
        uint256 burned = 0;
        unchecked {
            if (net > 0) {
                uint256 amount = uint256(net);
                uint256 paid = amount < deficit ? amount : deficit;
                minted = amount - paid;
                deficit -= paid;
                if (((aw >> MINTED_SHIFT) & MASK64) + minted > MASK64) revert TotalOutOfRange(key);
                aw = (aw & ~(MASK64 << DEFICIT_SHIFT)) + (minted | (minted << MINTED_SHIFT)) + (deficit << DEFICIT_SHIFT);
                supply += minted;
                // Checked where the supply grows: a balance (<= supply) then never carries past 64 bits.
                if (supply > MASK64) revert SupplyCapExceeded(supply);
                if (minted != 0) emit Transfer(address(0), owner, minted);
            } else if (net < 0) {
                uint256 amount = uint256(-net);
                uint256 balance = aw & MASK64;
                burned = amount < balance ? amount : balance;
                deficit += amount - burned;
                if (((aw >> BURNED_SHIFT) & MASK64) + burned > MASK64 || deficit > MASK64) revert TotalOutOfRange(key);
                aw = ((aw & ~(MASK64 << DEFICIT_SHIFT)) - burned + (burned << BURNED_SHIFT)) | (deficit << DEFICIT_SHIFT);
                supply -= burned; // burned <= balance <= supply
                if (burned != 0) emit Transfer(owner, address(0), burned);
            }
        }
        _accountWords[owner] = aw;
        emit WindowSettled(key, start, end, net, minted, burned, deficit, s.evidenceRoot);
        return supply;
    }

    /// @dev Checks contiguity and moves the facility's next window start to `end`. Returns the owner,
    /// or the zero address when the window is already settled and `skipSettled` is set.
    function _advance(bytes32 key, uint64 start, uint64 end, bool skipSettled) private returns (address owner) {
        uint256 fw = _facilityWords[key];
        owner = address(uint160(fw));
        if (owner == address(0)) revert FacilityNotRegistered(key);
        uint64 next = uint64(fw >> NEXT_SHIFT);
        if (start != next) {
            if (start > next) revert WindowOutOfOrder(key, next, start);
            if (!skipSettled) revert WindowAlreadySettled(key, start);
            emit SettlementSkipped(key, start);
            return address(0);
        }
        // "<=" states the rule exactly (an empty window is invalid); a strict rewrite saves 3 gas.
        // solhint-disable-next-line gas-strict-inequalities
        if (end <= start) revert InvalidWindow(key, start, end);
        _facilityWords[key] = (fw & ~(MASK64 << NEXT_SHIFT)) | (uint256(end) << NEXT_SHIFT);
    }

    /// @dev Writes the supply once per transaction (_settle enforces the 64-bit cap as it grows).
    function _storeSupply(uint256 supply) private {
        _totalSupply = supply;
    }

    /// @dev Burns, records and emits a retirement. Shared by {retire} and {retireWithSig}.
    function _retire(
        address holder,
        uint256 amount,
        string calldata beneficiary,
        string calldata reason
    ) private returns (uint256 id) {
        if (amount == 0) revert InvalidRetirementAmount(amount);
        if (bytes(beneficiary).length == 0) revert MissingBeneficiary();
        if (bytes(beneficiary).length > MAX_TEXT_LENGTH) {
            revert RetirementTextTooLong(bytes(beneficiary).length, MAX_TEXT_LENGTH);
        }
        if (bytes(reason).length > MAX_TEXT_LENGTH) revert RetirementTextTooLong(bytes(reason).length, MAX_TEXT_LENGTH);
        bytes32 key = _requireMovable(holder);
        uint256 aw = _accountWords[holder];
        uint256 balance = aw & MASK64;
        if (balance < amount) revert ERC20InsufficientBalance(holder, balance, amount);
        unchecked {
            _accountWords[holder] = aw - amount; // amount <= balance: only the balance bits change
            _totalSupply -= amount; // amount <= balance <= supply
        }
        if (key != bytes32(0)) _retired[key] += amount;
        id = ++_retirementCount;
        _retirements[id] = Retirement({
            account: holder,
            retiredAt: uint64(block.timestamp),
            facility: key,
            amount: amount,
            beneficiary: beneficiary,
            reason: reason
        });
        _retirementIds[holder].push(id);
        emit Transfer(holder, address(0), amount);
        emit CreditsRetired(id, holder, key, amount, beneficiary, reason);
    }

    /// @dev Moves credits between two accounts, refusing while paused or while a facility is suspended.
    function _transfer(address from, address to, uint256 value) private whenNotPaused {
        if (from == address(0)) revert ERC20InvalidSender(from);
        if (to == address(0)) revert ERC20InvalidReceiver(to);
        _requireMovable(from);
        _requireMovable(to);
        uint256 aw = _accountWords[from];
        uint256 balance = aw & MASK64;
        if (balance < value) revert ERC20InsufficientBalance(from, balance, value);
        unchecked {
            _accountWords[from] = aw - value; // value <= balance: only the balance bits change
            // The receiver's balance plus value is at most the supply (capped at 2^64 - 1): no carry
            // into the minted bits.
            _accountWords[to] += value;
        }
        emit Transfer(from, to, value);
    }

    /// @dev Sets an allowance, optionally emitting {Approval} (not emitted when transferFrom spends it).
    function _approve(address owner, address spender, uint256 value, bool emitEvent) private {
        if (owner == address(0)) revert ERC20InvalidApprover(owner);
        if (spender == address(0)) revert ERC20InvalidSpender(spender);
        _allowances[owner][spender] = value;
        if (emitEvent) emit Approval(owner, spender, value);
    }

    /// @dev Reverts when the account owns a suspended facility; returns the account's facility key.
    function _requireMovable(address account) private view returns (bytes32 key) {
        key = _facilityOf[account];
        if (key != bytes32(0) && _facilityWords[key] & SUSPENDED_BIT != 0) revert FacilityIsSuspended(key, account);
    }

    /// @dev The word of the registered facility with this key, or a {FacilityNotRegistered} revert.
    function _registered(bytes32 key) private view returns (uint256 fw) {
        fw = _facilityWords[key];
        if (fw == 0) revert FacilityNotRegistered(key);
    }
}
