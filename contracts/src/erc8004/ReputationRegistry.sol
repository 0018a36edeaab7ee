// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IdentityRegistry} from "./IdentityRegistry.sol";

/// @title ERC-8004 Reputation Registry (agentfleet build, ABI of the reference contracts v2.0.0)
/// @notice Clients rate agents with a signed fixed-point value (int128 with 0-18 decimals) and two
/// optional tags; value, decimals, tags and the revoked flag are stored, the endpoint, feedback
/// URI and hash are only emitted. An agent's owner and its approved operators cannot rate it.
/// Feedback indexes count from 1 per (agent, client). Anyone may append responses to feedback.
contract ReputationRegistry {
    int128 private constant MAX_ABS_VALUE = 1e38;
    uint8 private constant MAX_DECIMALS = 18;

    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
        bytes32 feedbackHash
    );
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );

    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        bool isRevoked;
        string tag1;
        string tag2;
    }

    /// @dev The tag filter of the read functions: an empty filter tag matches every feedback.
    struct TagFilter {
        bytes32 tag1Hash;
        bytes32 tag2Hash;
    }

    bytes32 private constant EMPTY_HASH = keccak256("");

    IdentityRegistry private immutable _identityRegistry;

    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => Feedback))) private _feedback;
    mapping(uint256 agentId => mapping(address client => uint64)) private _lastIndex;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => mapping(address responder => uint64))))
        private _responseCount;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => address[]))) private _responders;
    mapping(uint256 agentId => address[]) private _clients;
    mapping(uint256 agentId => mapping(address client => bool)) private _isClient;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity");
        _identityRegistry = IdentityRegistry(identityRegistry_);
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identityRegistry);
    }

    /// @notice Records feedback from msg.sender. Reverts with ERC721NonexistentToken (from the
    /// identity registry) for an unknown agent and "Self-feedback not allowed" for its owner or
    /// operators.
    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2,
        string memory endpoint,
        string memory feedbackURI,
        bytes32 feedbackHash
    ) external {
        require(valueDecimals <= MAX_DECIMALS, "too many decimals");
        require(value >= -MAX_ABS_VALUE && value <= MAX_ABS_VALUE, "value too large");
        require(!_identityRegistry.isAuthorizedOrOwner(msg.sender, agentId), "Self-feedback not allowed");

        uint64 feedbackIndex = ++_lastIndex[agentId][msg.sender];
        _feedback[agentId][msg.sender][feedbackIndex] =
            Feedback({value: value, valueDecimals: valueDecimals, isRevoked: false, tag1: tag1, tag2: tag2});
        if (!_isClient[agentId][msg.sender]) {
            _isClient[agentId][msg.sender] = true;
            _clients[agentId].push(msg.sender);
        }
        emit NewFeedback(
            agentId, msg.sender, feedbackIndex, value, valueDecimals, tag1, tag1, tag2, endpoint, feedbackURI, feedbackHash
        );
    }

    /// @notice Marks msg.sender's own feedback as revoked (it stays readable, flagged).
    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        _requireFeedbackIndex(agentId, msg.sender, feedbackIndex);
        Feedback storage feedback = _feedback[agentId][msg.sender][feedbackIndex];
        require(!feedback.isRevoked, "Already revoked");
        feedback.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    /// @notice Attaches a response (a refund proof, a spam tag...) by anyone to existing feedback.
    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        require(feedbackIndex > 0, "index must be > 0");
        require(bytes(responseURI).length > 0, "Empty URI");
        require(feedbackIndex <= _lastIndex[agentId][clientAddress], "index out of bounds");
        if (_responseCount[agentId][clientAddress][feedbackIndex][msg.sender]++ == 0) {
            _responders[agentId][clientAddress][feedbackIndex].push(msg.sender);
        }
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return _lastIndex[agentId][clientAddress];
    }

    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (int128 value, uint8 valueDecimals, string memory tag1, string memory tag2, bool isRevoked)
    {
        _requireFeedbackIndex(agentId, clientAddress, feedbackIndex);
        Feedback storage f = _feedback[agentId][clientAddress][feedbackIndex];
        return (f.value, f.valueDecimals, f.tag1, f.tag2, f.isRevoked);
    }

    /// @notice Average of the non-revoked feedback of `clientAddresses` (required: unfiltered
    /// summaries are open to Sybil spam) matching the tags. Values are averaged at 18 decimals,
    /// then expressed with the most frequent valueDecimals (ties: the smallest); (0, 0, 0) when
    /// nothing matches.
    function getSummary(
        uint256 agentId,
        address[] calldata clientAddresses,
        string calldata tag1,
        string calldata tag2
    ) external view returns (uint64 count, int128 summaryValue, uint8 summaryValueDecimals) {
        require(clientAddresses.length > 0, "clientAddresses required");
        (address[] memory clients, uint64[] memory indexes) =
            _select(agentId, clientAddresses, _tagFilter(tag1, tag2), false);
        count = uint64(clients.length);
        if (count > 0) (summaryValue, summaryValueDecimals) = _average(agentId, clients, indexes);
    }

    /// @notice Every feedback of `clientAddresses` (all clients when empty) matching the tags,
    /// revoked ones only if `includeRevoked`, as parallel arrays in client then index order.
    /// @dev memory (not calldata) arguments here and in giveFeedback: same ABI, fewer stack slots
    /// (the build does not use via-IR).
    function readAllFeedback(
        uint256 agentId,
        address[] memory clientAddresses,
        string memory tag1,
        string memory tag2,
        bool includeRevoked
    )
        external
        view
        returns (
            address[] memory clients,
            uint64[] memory feedbackIndexes,
            int128[] memory values,
            uint8[] memory valueDecimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revokedStatuses
        )
    {
        (clients, feedbackIndexes) =
            _select(agentId, _clientsOr(agentId, clientAddresses), _tagFilter(tag1, tag2), includeRevoked);
        (values, valueDecimals, tag1s, tag2s, revokedStatuses) = _load(agentId, clients, feedbackIndexes);
    }

    /// @notice Number of responses: to every feedback of the agent (clientAddress 0), to every
    /// feedback of one client (feedbackIndex 0) or to one feedback; from `responders` only, or
    /// from anyone when empty.
    function getResponseCount(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) external view returns (uint64 count) {
        if (clientAddress == address(0)) {
            address[] storage clients = _clients[agentId];
            for (uint256 i; i < clients.length; i++) {
                count += _countClientResponses(agentId, clients[i], responders);
            }
        } else if (feedbackIndex == 0) {
            count = _countClientResponses(agentId, clientAddress, responders);
        } else {
            count = _countResponses(agentId, clientAddress, feedbackIndex, responders);
        }
    }

    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clients[agentId];
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    function _countClientResponses(uint256 agentId, address clientAddress, address[] calldata responders)
        private
        view
        returns (uint64 count)
    {
        uint64 last = _lastIndex[agentId][clientAddress];
        for (uint64 j = 1; j <= last; j++) {
            count += _countResponses(agentId, clientAddress, j, responders);
        }
    }

    function _countResponses(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) private view returns (uint64 count) {
        mapping(address => uint64) storage perResponder = _responseCount[agentId][clientAddress][feedbackIndex];
        address[] memory from = responders;
        if (from.length == 0) from = _responders[agentId][clientAddress][feedbackIndex];
        for (uint256 k; k < from.length; k++) {
            count += perResponder[from[k]];
        }
    }

    /// @dev The (client, index) pairs of the matching feedback, in client then index order.
    function _select(uint256 agentId, address[] memory clientList, TagFilter memory filter, bool includeRevoked)
        private
        view
        returns (address[] memory clients, uint64[] memory indexes)
    {
        uint256 total;
        for (uint256 pass; pass < 2; pass++) {
            if (pass == 1) {
                clients = new address[](total);
                indexes = new uint64[](total);
                total = 0;
            }
            for (uint256 i; i < clientList.length; i++) {
                uint64 last = _lastIndex[agentId][clientList[i]];
                for (uint64 j = 1; j <= last; j++) {
                    Feedback storage f = _feedback[agentId][clientList[i]][j];
                    if ((f.isRevoked && !includeRevoked) || !_matches(f, filter)) continue;
                    if (pass == 1) {
                        clients[total] = clientList[i];
                        indexes[total] = j;
                    }
                    total++;
                }
            }
        }
    }

    /// @dev Mean of the feedback at 18 decimals, scaled to the most frequent valueDecimals.
    function _average(uint256 agentId, address[] memory clients, uint64[] memory indexes)
        private
        view
        returns (int128 value, uint8 decimals)
    {
        int256 sumWad;
        uint64[MAX_DECIMALS + 1] memory decimalsFrequency;
        for (uint256 i; i < clients.length; i++) {
            Feedback storage f = _feedback[agentId][clients[i]][indexes[i]];
            sumWad += int256(f.value) * int256(10 ** uint256(MAX_DECIMALS - f.valueDecimals));
            decimalsFrequency[f.valueDecimals]++;
        }
        uint64 best;
        for (uint8 d; d <= MAX_DECIMALS; d++) {
            if (decimalsFrequency[d] > best) {
                best = decimalsFrequency[d];
                decimals = d;
            }
        }
        int256 averageWad = sumWad / int256(clients.length);
        value = int128(averageWad / int256(10 ** uint256(MAX_DECIMALS - decimals)));
    }

    /// @dev `clientAddresses`, or every client of the agent when it is empty.
    function _clientsOr(uint256 agentId, address[] memory clientAddresses) private view returns (address[] memory) {
        if (clientAddresses.length > 0) return clientAddresses;
        return _clients[agentId];
    }

    function _load(uint256 agentId, address[] memory clients, uint64[] memory indexes)
        private
        view
        returns (
            int128[] memory values,
            uint8[] memory valueDecimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revokedStatuses
        )
    {
        values = new int128[](clients.length);
        valueDecimals = new uint8[](clients.length);
        tag1s = new string[](clients.length);
        tag2s = new string[](clients.length);
        revokedStatuses = new bool[](clients.length);
        for (uint256 i; i < clients.length; i++) {
            Feedback storage f = _feedback[agentId][clients[i]][indexes[i]];
            values[i] = f.value;
            valueDecimals[i] = f.valueDecimals;
            tag1s[i] = f.tag1;
            tag2s[i] = f.tag2;
            revokedStatuses[i] = f.isRevoked;
        }
    }

    function _requireFeedbackIndex(uint256 agentId, address clientAddress, uint64 feedbackIndex) private view {
        require(feedbackIndex > 0, "index must be > 0");
        require(feedbackIndex <= _lastIndex[agentId][clientAddress], "index out of bounds");
    }

    function _tagFilter(string memory tag1, string memory tag2) private pure returns (TagFilter memory) {
        return TagFilter({tag1Hash: keccak256(bytes(tag1)), tag2Hash: keccak256(bytes(tag2))});
    }

    function _matches(Feedback storage f, TagFilter memory filter) private view returns (bool) {
        return (filter.tag1Hash == EMPTY_HASH || filter.tag1Hash == keccak256(bytes(f.tag1)))
            && (filter.tag2Hash == EMPTY_HASH || filter.tag2Hash == keccak256(bytes(f.tag2)));
    }
}
