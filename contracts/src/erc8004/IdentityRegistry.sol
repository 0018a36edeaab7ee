// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title ERC-8004 Identity Registry (agentfleet build, ABI of the reference contracts v2.0.0)
/// @notice Every agent is an ERC-721 token: agentId = tokenId, agentURI = tokenURI. Agents carry
/// free-form on-chain metadata (string key => bytes value). The key "agentWallet" is reserved: it
/// holds the address that receives the agent's payments, starts as the registering owner, can
/// only be changed with a signature of the new wallet (EIP-712 for EOAs, ERC-1271 for contract
/// wallets), and is cleared whenever the agent changes hands.
/// @dev Plain constructor, no proxy: same external surface as the reference
/// IdentityRegistryUpgradeable minus the UUPS/Ownable administration.
contract IdentityRegistry is ERC721URIStorage, EIP712 {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    /// @dev The signed struct; `owner` is the agent's owner when setAgentWallet runs, so a
    /// signature does not survive a change of owner.
    bytes32 private constant AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");
    /// @dev A wallet signature may be valid for at most this long into the future.
    uint256 private constant MAX_DEADLINE_DELAY = 5 minutes;
    string private constant AGENT_WALLET_KEY = "agentWallet";
    bytes32 private constant AGENT_WALLET_KEY_HASH = keccak256("agentWallet");

    uint256 private _lastId;
    mapping(uint256 agentId => mapping(string metadataKey => bytes metadataValue)) private _metadata;

    constructor() ERC721("AgentIdentity", "AGENT") EIP712("ERC8004IdentityRegistry", "1") {}

    /// @notice Registers an agent without a URI (set it later with setAgentURI).
    function register() external returns (uint256 agentId) {
        agentId = _mintAgent();
        emit Registered(agentId, "", msg.sender);
        _emitWallet(agentId);
    }

    function register(string memory agentURI) external returns (uint256 agentId) {
        agentId = _mintAgent();
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _emitWallet(agentId);
    }

    /// @notice Registers an agent with extra metadata; "agentWallet" may not be among the keys.
    function register(string memory agentURI, MetadataEntry[] memory metadata)
        external
        returns (uint256 agentId)
    {
        agentId = _mintAgent();
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _emitWallet(agentId);
        for (uint256 i; i < metadata.length; i++) {
            _requireNotReserved(metadata[i].metadataKey);
            _metadata[agentId][metadata[i].metadataKey] = metadata[i].metadataValue;
            emit MetadataSet(agentId, metadata[i].metadataKey, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    function getMetadata(uint256 agentId, string memory metadataKey) external view returns (bytes memory) {
        return _metadata[agentId][metadataKey];
    }

    function setMetadata(uint256 agentId, string memory metadataKey, bytes memory metadataValue) external {
        _requireOwnerOrOperator(agentId);
        _requireNotReserved(metadataKey);
        _metadata[agentId][metadataKey] = metadataValue;
        emit MetadataSet(agentId, metadataKey, metadataKey, metadataValue);
    }

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _requireOwnerOrOperator(agentId);
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    /// @notice The agent's payment wallet; the zero address when unset or the agent is unknown.
    function getAgentWallet(uint256 agentId) external view returns (address) {
        return address(bytes20(_metadata[agentId][AGENT_WALLET_KEY]));
    }

    /// @notice Points the agent's payment wallet at `newWallet`, which must have signed the
    /// EIP-712 message AgentWalletSet(agentId, newWallet, owner, deadline) for this registry
    /// (domain "ERC8004IdentityRegistry", version "1"). ECDSA is tried first (EOAs, including
    /// EIP-7702 delegated ones), then ERC-1271 (contract wallets).
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature)
        external
    {
        address owner = _requireOwnerOrOperator(agentId);
        require(newWallet != address(0), "bad wallet");
        require(block.timestamp <= deadline, "expired");
        require(deadline <= block.timestamp + MAX_DEADLINE_DELAY, "deadline too far");

        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline)));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != newWallet) {
            require(
                SignatureChecker.isValidERC1271SignatureNowCalldata(newWallet, digest, signature),
                "invalid wallet sig"
            );
        }
        _storeWallet(agentId, abi.encodePacked(newWallet));
    }

    function unsetAgentWallet(uint256 agentId) external {
        _requireOwnerOrOperator(agentId);
        _storeWallet(agentId, "");
    }

    /// @notice Whether `spender` owns the agent or may manage it (approved or operator).
    /// Reverts with ERC721NonexistentToken for an unknown agent.
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool) {
        return _isAuthorized(ownerOf(agentId), spender, agentId);
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    /// @dev A transfer (not a mint) clears the verified wallet before the token moves, so a new
    /// owner never inherits the previous owner's payment address.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        if (_ownerOf(tokenId) != address(0) && to != address(0)) {
            _storeWallet(tokenId, "");
        }
        return super._update(to, tokenId, auth);
    }

    function _mintAgent() private returns (uint256 agentId) {
        agentId = _lastId++;
        _metadata[agentId][AGENT_WALLET_KEY] = abi.encodePacked(msg.sender);
        _safeMint(msg.sender, agentId);
    }

    function _emitWallet(uint256 agentId) private {
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, _metadata[agentId][AGENT_WALLET_KEY]);
    }

    function _storeWallet(uint256 agentId, bytes memory wallet) private {
        _metadata[agentId][AGENT_WALLET_KEY] = wallet;
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, wallet);
    }

    function _requireOwnerOrOperator(uint256 agentId) private view returns (address owner) {
        owner = ownerOf(agentId);
        require(_isAuthorized(owner, msg.sender, agentId), "Not authorized");
    }

    function _requireNotReserved(string memory metadataKey) private pure {
        require(keccak256(bytes(metadataKey)) != AGENT_WALLET_KEY_HASH, "reserved key");
    }
}
