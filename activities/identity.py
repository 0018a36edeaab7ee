"""Bot identity: its wallet (generated and kept encrypted here), its ERC-8004 registration, and
its row in the ``bots`` table. Keys never leave this module's activities; results carry
addresses only. Every activity is idempotent by the bot's name."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError
from web3 import AsyncWeb3

from activities.queues import runs_on
from agentfleet import db, keystore, taskqueues
from agentfleet.bots.model import (
    BotRecordUpdate,
    ChainContext,
    Registration,
    RegistrationQuery,
    RegistrationTx,
    Wallet,
    WalletRequest,
    bot_schedule_prefix,
)
from agentfleet.chain import artifacts
from agentfleet.chain.accounts import DEV_CHAIN_IDS
from agentfleet.chain.rpc import Web3Connection
from agentfleet.chaos import chaos_point
from agentfleet.errors import FleetError
from agentfleet.models import AuditEvent, BotRecord, utcnow
from agentfleet.settings import Settings


def wallet_label(bot: str) -> str:
    return f"bot:{bot}"


def registration_url(settings: Settings, bot: str) -> str:
    return f"{settings.http_url}/bots/{bot}/registration.json"


class IdentityActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._url = settings.effective_database_url
        self._rpc = Web3Connection(settings.effective_rpc_url)

    async def close(self) -> None:
        await self._rpc.close()

    @activity.defn(name="provision_wallet")
    def provision_wallet(self, request: WalletRequest) -> Wallet:
        """The bot's wallet: generated once (a retry finds the stored one), kept encrypted."""
        address = keystore.generate_key(self._settings, wallet_label(request.bot))
        chaos_point("after_wallet", request.bot)
        return Wallet(bot=request.bot, address=address)

    @activity.defn(name="chain_context")
    def chain_context(self) -> ChainContext:
        from agentfleet.chain.deployment.manifest import load_deployment
        from agentfleet.chain.relayers import relayers

        try:
            deployment = load_deployment(self._settings)
        except FleetError as exc:
            raise ApplicationError(str(exc), type="NoDeployment") from exc
        if deployment is None:
            raise ApplicationError(
                "no contract deployment for this chain; run `fleet up` or `fleet chain deploy`",
                type="NoDeployment",
                non_retryable=True,
            )
        funders = relayers(self._settings)
        return ChainContext(
            chain_id=self._settings.chain_id,
            is_dev=self._settings.chain_id in DEV_CHAIN_IDS,
            fleet_usd=deployment.address("FleetUSD"),
            identity_registry=deployment.address("IdentityRegistry"),
            identity_registry_block=deployment.contracts["IdentityRegistry"].block,
            funder=funders[0] if funders else None,
        )

    @activity.defn(name="native_balance")
    @runs_on(taskqueues.CHAIN)
    async def native_balance(self, wallet: Wallet) -> int:
        return int(
            await self._rpc.get().eth.get_balance(AsyncWeb3.to_checksum_address(wallet.address))
        )

    @activity.defn(name="find_registration")
    @runs_on(taskqueues.CHAIN)
    async def find_registration(self, query: RegistrationQuery) -> Registration:
        """The agent this wallet already owns on the IdentityRegistry, if any (so a crash
        between sending and recording never registers twice)."""
        w3 = self._rpc.get()
        registry = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(query.context.identity_registry),
            abi=artifacts.load("IdentityRegistry").abi,
        )
        owner = AsyncWeb3.to_checksum_address(query.address)
        if int(await registry.functions.balanceOf(owner).call()) == 0:
            return Registration(agent_id=None)
        logs = await registry.events.Registered().get_logs(
            from_block=query.context.identity_registry_block, argument_filters={"owner": owner}
        )
        if not logs:
            return Registration(agent_id=None)
        agent_id = int(logs[-1]["args"]["agentId"])
        wallet = await registry.functions.getAgentWallet(agent_id).call()
        return Registration(agent_id=agent_id, agent_wallet=str(wallet))

    @activity.defn(name="registration_tx")
    @runs_on(taskqueues.CHAIN)
    def registration_tx(self, query: RegistrationQuery) -> RegistrationTx:
        """Calldata of ``register(agentURI)`` with the bot's registration file as its URI."""
        registry = AsyncWeb3().eth.contract(abi=artifacts.load("IdentityRegistry").abi)
        uri = registration_url(self._settings, query.bot)
        data = registry.encode_abi("register", args=[uri])
        return RegistrationTx(to=query.context.identity_registry, data=data, agent_uri=uri)

    @activity.defn(name="fusd_transfer_tx")
    @runs_on(taskqueues.CHAIN)
    def fusd_transfer_tx(self, query: RegistrationQuery) -> RegistrationTx:
        token = AsyncWeb3().eth.contract(abi=artifacts.load("FleetUSD").abi)
        data = token.encode_abi(
            "transfer",
            args=[AsyncWeb3.to_checksum_address(query.address), query.context.fund_fusd_units],
        )
        return RegistrationTx(to=query.context.fleet_usd, data=data, agent_uri="")

    @activity.defn(name="record_bot")
    def record_bot(self, update: BotRecordUpdate) -> None:
        """Upsert the bot's row and, once per transition, an audit row."""
        with db.session_scope(self._url) as session:
            row = session.get(BotRecord, update.name)
            if row is None:
                row = BotRecord(
                    name=update.name,
                    kind=update.kind.value,
                    owner=update.owner,
                    status=update.status.value,
                )
            row.status = update.status.value
            row.kind = update.kind.value
            row.owner = update.owner
            row.description = update.description
            row.params = dict(update.params)
            row.address = update.address or row.address
            row.agent_id = update.agent_id if update.agent_id is not None else row.agent_id
            row.reason = update.reason
            row.model_version = update.model_version
            row.updated_at = utcnow()
            if update.status.value == "retired" and row.retired_at is None:
                row.retired_at = utcnow()
            session.add(row)
            if update.event:
                info = activity.info()
                db.record_once(
                    session,
                    AuditEvent(
                        idempotency_key=f"{info.workflow_id}/{info.activity_id}/{update.event}",
                        actor="fleet",
                        kind=f"bot.{update.event}",
                        subject=update.name,
                        workflow_id=update.workflow_id,
                        detail={"status": update.status.value, "reason": update.reason},
                    ),
                )

    @activity.defn(name="delete_bot_schedules")
    async def delete_bot_schedules(self, request: WalletRequest) -> int:
        """Delete the Temporal Schedules that belong to the bot (ids ``bot-{name}-...``)."""
        client = activity.client()
        deleted = 0
        prefix = bot_schedule_prefix(request.bot)
        async for schedule in await client.list_schedules():
            if schedule.id.startswith(prefix):
                await client.get_schedule_handle(schedule.id).delete()
                deleted += 1
        return deleted
