// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IdentityRegistry} from "./IdentityRegistry.sol";

/// @title ERC-8004 Validation Registry (agentfleet build, ABI of the reference contracts v2.0.0)
/// @notice An agent's owner or operator asks a named validator to check a piece of work,
/// identified by `requestHash` (a commitment to the request payload); only that validator can
/// answer, with a score of 0-100 and an optional tag, as many times as it likes (the last answer
/// is stored: progressive states such as soft and hard finality).
contract ValidationRegistry {
    uint8 private constant MAX_RESPONSE = 100;

    event ValidationRequest(
        address indexed validatorAddress, uint256 indexed agentId, string requestURI, bytes32 indexed requestHash
    );
    event ValidationResponse(
        address indexed validatorAddress,
        uint256 indexed agentId,
        bytes32 indexed requestHash,
        uint8 response,
        string responseURI,
        bytes32 responseHash,
        string tag
    );

    struct ValidationStatus {
        address validatorAddress;
        uint8 response;
        bool hasResponse;
        uint256 agentId;
        bytes32 responseHash;
        string tag;
        uint256 lastUpdate;
    }

    IdentityRegistry private immutable _identityRegistry;

    mapping(bytes32 requestHash => ValidationStatus) private _validations;
    mapping(uint256 agentId => bytes32[]) private _agentValidations;
    mapping(address validator => bytes32[]) private _validatorRequests;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity");
        _identityRegistry = IdentityRegistry(identityRegistry_);
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identityRegistry);
    }

    /// @notice Opens a request; `requestHash` must be new. Only the agent's owner or an approved
    /// operator may ask (ERC721NonexistentToken from the identity registry for an unknown agent).
    function validationRequest(
        address validatorAddress,
        uint256 agentId,
        string calldata requestURI,
        bytes32 requestHash
    ) external {
        require(validatorAddress != address(0), "bad validator");
        require(_validations[requestHash].validatorAddress == address(0), "exists");
        require(_identityRegistry.isAuthorizedOrOwner(msg.sender, agentId), "Not authorized");

        ValidationStatus storage s = _validations[requestHash];
        s.validatorAddress = validatorAddress;
        s.agentId = agentId;
        s.lastUpdate = block.timestamp;
        _agentValidations[agentId].push(requestHash);
        _validatorRequests[validatorAddress].push(requestHash);
        emit ValidationRequest(validatorAddress, agentId, requestURI, requestHash);
    }

    /// @notice The named validator answers (again) with a score of 0-100.
    function validationResponse(
        bytes32 requestHash,
        uint8 response,
        string calldata responseURI,
        bytes32 responseHash,
        string calldata tag
    ) external {
        ValidationStatus storage s = _validations[requestHash];
        require(s.validatorAddress != address(0), "unknown");
        require(msg.sender == s.validatorAddress, "not validator");
        require(response <= MAX_RESPONSE, "resp>100");
        s.response = response;
        s.responseHash = responseHash;
        s.tag = tag;
        s.lastUpdate = block.timestamp;
        s.hasResponse = true;
        emit ValidationResponse(s.validatorAddress, s.agentId, requestHash, response, responseURI, responseHash, tag);
    }

    /// @notice The request's latest state; response 0 and an empty tag until the validator
    /// answers. Reverts "unknown" for a hash never requested.
    function getValidationStatus(bytes32 requestHash)
        external
        view
        returns (
            address validatorAddress,
            uint256 agentId,
            uint8 response,
            bytes32 responseHash,
            string memory tag,
            uint256 lastUpdate
        )
    {
        ValidationStatus storage s = _validations[requestHash];
        require(s.validatorAddress != address(0), "unknown");
        return (s.validatorAddress, s.agentId, s.response, s.responseHash, s.tag, s.lastUpdate);
    }

    /// @notice Count and integer average of the answered requests of the agent, optionally only
    /// those of `validatorAddresses` (empty: all) and with `tag` (empty: any).
    function getSummary(uint256 agentId, address[] calldata validatorAddresses, string calldata tag)
        external
        view
        returns (uint64 count, uint8 avgResponse)
    {
        bytes32 tagHash = keccak256(bytes(tag));
        bool anyTag = bytes(tag).length == 0;
        uint256 total;
        bytes32[] storage requests = _agentValidations[agentId];
        for (uint256 i; i < requests.length; i++) {
            ValidationStatus storage s = _validations[requests[i]];
            if (!s.hasResponse || !_contains(validatorAddresses, s.validatorAddress)) continue;
            if (!anyTag && keccak256(bytes(s.tag)) != tagHash) continue;
            total += s.response;
            count++;
        }
        avgResponse = count > 0 ? uint8(total / count) : 0;
    }

    function getAgentValidations(uint256 agentId) external view returns (bytes32[] memory) {
        return _agentValidations[agentId];
    }

    function getValidatorRequests(address validatorAddress) external view returns (bytes32[] memory) {
        return _validatorRequests[validatorAddress];
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    /// @dev An empty filter contains every validator.
    function _contains(address[] calldata filter, address validator) private pure returns (bool) {
        if (filter.length == 0) return true;
        for (uint256 j; j < filter.length; j++) {
            if (filter[j] == validator) return true;
        }
        return false;
    }
}
