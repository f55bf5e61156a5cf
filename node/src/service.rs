//! Assembles the node: client, database, networking, consensus, offchain workers and RPC.

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use keymesh_runtime::{apis::RuntimeApi, opaque::Block};
use sc_client_api::{Backend, BlockBackend};
use sc_consensus_aura::{ImportQueueParams, SlotProportion, StartAuraParams};
use sc_consensus_grandpa::SharedVoterState;
use sc_service::{error::Error as ServiceError, Configuration, TaskManager, WarpSyncConfig};
use sc_transaction_pool_api::{OffchainTransactionPoolFactory, TransactionPool};
use sp_consensus_aura::sr25519::{AuthorityId as AuraId, AuthorityPair as AuraPair};

use crate::{cli::Sealing, peers};

type FullClient = sc_service::TFullClient<
    Block,
    RuntimeApi,
    sc_executor::WasmExecutor<sp_io::SubstrateHostFunctions>,
>;
type FullBackend = sc_service::TFullBackend<Block>;
type FullSelectChain = sc_consensus::LongestChain<FullBackend, Block>;
type FullPool = sc_transaction_pool::TransactionPoolHandle<Block, FullClient>;

/// Blocks between two stored GRANDPA justifications. Light clients and warp sync need
/// only these, so one every 512 blocks (about 8.5 min at 1 s blocks) is plenty.
const GRANDPA_JUSTIFICATION_PERIOD: u32 = 512;

/// The parts of a node that every mode shares.
struct Parts {
    client: Arc<FullClient>,
    backend: Arc<FullBackend>,
    task_manager: TaskManager,
    keystore_container: sc_service::KeystoreContainer,
    select_chain: FullSelectChain,
    transaction_pool: Arc<FullPool>,
}

fn new_parts(config: &Configuration) -> Result<Parts, ServiceError> {
    let executor = sc_service::new_wasm_executor::<sp_io::SubstrateHostFunctions>(&config.executor);
    // No telemetry: the design leaves the telemetry worker out, so no handle is passed.
    let (client, backend, keystore_container, task_manager) =
        sc_service::new_full_parts::<Block, RuntimeApi, _>(config, None, executor, Vec::new())?;
    let client = Arc::new(client);
    let select_chain = sc_consensus::LongestChain::new(backend.clone());
    let transaction_pool = Arc::from(
        sc_transaction_pool::Builder::new(
            task_manager.spawn_essential_handle(),
            client.clone(),
            config.role.is_authority().into(),
        )
        .with_options(config.transaction_pool.clone())
        .with_prometheus(config.prometheus_registry())
        .build(),
    );
    Ok(Parts {
        client,
        backend,
        task_manager,
        keystore_container,
        select_chain,
        transaction_pool,
    })
}

/// Builds and starts a full node in the given sealing mode.
pub fn new_full<
    N: sc_network::NetworkBackend<Block, <Block as sp_runtime::traits::Block>::Hash>,
>(
    mut config: Configuration,
    sealing: Sealing,
) -> Result<TaskManager, ServiceError> {
    // Every node, validator or not, takes only authorized peers (see `peers`).
    peers::refuse_strangers(&mut config.network);
    config.offchain_worker.enabled = true;
    let Parts {
        client,
        backend,
        mut task_manager,
        keystore_container,
        select_chain,
        transaction_pool,
    } = new_parts(&config)?;

    // GRANDPA is set up only when Aura produces blocks; instant sealing finalizes itself.
    let grandpa = match sealing {
        Sealing::Aura => Some(sc_consensus_grandpa::block_import(
            client.clone(),
            GRANDPA_JUSTIFICATION_PERIOD,
            &client,
            select_chain.clone(),
            None,
        )?),
        Sealing::Instant => None,
    };

    let import_queue = match &grandpa {
        Some((grandpa_block_import, _)) => {
            let cidp_client = client.clone();
            sc_consensus_aura::import_queue::<AuraPair, _, _, _, _, _>(ImportQueueParams {
                block_import: grandpa_block_import.clone(),
                justification_import: Some(Box::new(grandpa_block_import.clone())),
                client: client.clone(),
                create_inherent_data_providers: move |parent_hash, _| {
                    let cidp_client = cidp_client.clone();
                    async move {
                        let slot_duration = sc_consensus_aura::standalone::slot_duration_at(
                            &*cidp_client,
                            parent_hash,
                        )?;
                        let timestamp = sp_timestamp::InherentDataProvider::from_system_time();
                        let slot = sp_consensus_aura::inherents::InherentDataProvider::from_timestamp_and_slot_duration(
                            *timestamp,
                            slot_duration,
                        );
                        Ok((slot, timestamp))
                    }
                },
                spawner: &task_manager.spawn_essential_handle(),
                registry: config.prometheus_registry(),
                check_for_equivocation: Default::default(),
                telemetry: None,
                compatibility_mode: Default::default(),
            })?
        }
        None => sc_consensus_manual_seal::import_queue(
            Box::new(client.clone()),
            &task_manager.spawn_essential_handle(),
            config.prometheus_registry(),
        ),
    };

    let mut net_config = sc_network::config::FullNetworkConfiguration::<
        Block,
        <Block as sp_runtime::traits::Block>::Hash,
        N,
    >::new(&config.network, config.prometheus_registry().cloned());
    let metrics = N::register_notification_metrics(config.prometheus_registry());

    let genesis_hash = client
        .block_hash(0)
        .ok()
        .flatten()
        .ok_or_else(|| ServiceError::Other("the database holds no genesis block".into()))?;
    let grandpa_protocol_name =
        sc_consensus_grandpa::protocol_standard_name(&genesis_hash, &config.chain_spec);
    let grandpa_notification_service = if grandpa.is_some() {
        let (grandpa_protocol_config, notification_service) =
            sc_consensus_grandpa::grandpa_peers_set_config::<_, N>(
                grandpa_protocol_name.clone(),
                metrics.clone(),
                net_config.peer_store_handle(),
            );
        net_config.add_notification_protocol(grandpa_protocol_config);
        Some(notification_service)
    } else {
        None
    };

    let warp_sync_config = grandpa.as_ref().map(|(_, link)| {
        WarpSyncConfig::WithProvider(Arc::new(
            sc_consensus_grandpa::warp_proof::NetworkProvider::new(
                backend.clone(),
                link.shared_authority_set().clone(),
                Vec::default(),
            ),
        ))
    });

    let (network, system_rpc_tx, tx_handler_controller, sync_service, _bitswap) =
        sc_service::build_network(sc_service::BuildNetworkParams {
            config: &config,
            net_config,
            client: client.clone(),
            transaction_pool: transaction_pool.clone(),
            spawn_handle: task_manager.spawn_handle(),
            spawn_essential_handle: task_manager.spawn_essential_handle(),
            import_queue,
            block_announce_validator_builder: None,
            warp_sync_config,
            block_relay: None,
            metrics,
            gap_sync_body_policy: None,
        })?;

    let authorized = peers::well_known_nodes::<Block, _>(&*client, client.chain_info().best_hash)
        .map_err(ServiceError::Other)?;
    peers::reserve(&*network, authorized);
    // From here on, the node-authorization pallet's offchain worker hands the authorized
    // peer set to the network on every block.
    if config.offchain_worker.enabled {
        let offchain_workers =
            sc_offchain::OffchainWorkers::new(sc_offchain::OffchainWorkerOptions {
                runtime_api_provider: client.clone(),
                is_validator: config.role.is_authority(),
                keystore: Some(keystore_container.keystore()),
                offchain_db: backend.offchain_storage(),
                transaction_pool: Some(OffchainTransactionPoolFactory::new(
                    transaction_pool.clone(),
                )),
                network_provider: Arc::new(network.clone()),
                enable_http_requests: false,
                custom_extensions: |_| vec![],
            })?;
        task_manager.spawn_handle().spawn(
            "offchain-workers-runner",
            "offchain-worker",
            offchain_workers
                .run(client.clone(), task_manager.spawn_handle())
                .boxed(),
        );
    }

    let role = config.role;
    let force_authoring = config.force_authoring;
    let name = config.network.node_name.clone();
    let enable_grandpa = !config.disable_grandpa;
    let prometheus_registry = config.prometheus_registry().cloned();

    let rpc_builder = {
        let client = client.clone();
        let pool = transaction_pool.clone();
        Box::new(move |_| {
            let deps = crate::rpc::FullDeps {
                client: client.clone(),
                pool: pool.clone(),
            };
            crate::rpc::create_full(deps).map_err(Into::into)
        })
    };

    sc_service::spawn_tasks(sc_service::SpawnTasksParams {
        network: Arc::new(network.clone()),
        client: client.clone(),
        keystore: keystore_container.keystore(),
        task_manager: &mut task_manager,
        transaction_pool: transaction_pool.clone(),
        rpc_builder,
        backend,
        system_rpc_tx,
        tx_handler_controller,
        sync_service: sync_service.clone(),
        config,
        telemetry: None,
        tracing_execute_block: None,
    })?;

    let proposer_factory = sc_basic_authorship::ProposerFactory::new(
        task_manager.spawn_handle(),
        client.clone(),
        transaction_pool.clone(),
        prometheus_registry.as_ref(),
        None,
    );

    let Some((block_import, grandpa_link)) = grandpa else {
        // Instant sealing (see `crate::instant`): a block per transaction and a heartbeat,
        // each finalized at once and stamped with the wall clock.
        let aura_data =
            sc_consensus_manual_seal::consensus::aura::AuraConsensusDataProvider::<Block>::new(
                client.clone(),
            );
        let slot_ms = sc_consensus_aura::slot_duration(&*client)?.as_millis();
        let cidp_client = client.clone();
        let params = sc_consensus_manual_seal::ManualSealParams {
            block_import: client.clone(),
            env: proposer_factory,
            client: client.clone(),
            pool: transaction_pool.clone(),
            commands_stream: crate::instant::commands(
                transaction_pool.import_notification_stream(),
            ),
            select_chain,
            consensus_data_provider: Some(Box::new(aura_data)),
            create_inherent_data_providers: move |parent, ()| {
                let timestamp = crate::instant::next_timestamp(&cidp_client, parent, slot_ms);
                async move { Ok(sp_timestamp::InherentDataProvider::new(timestamp?)) }
            },
        };
        task_manager.spawn_essential_handle().spawn_blocking(
            "instant-seal",
            None,
            sc_consensus_manual_seal::run_manual_seal(params),
        );
        return Ok(task_manager);
    };

    if role.is_authority() {
        let slot_duration = sc_consensus_aura::slot_duration::<AuraId, _, _>(&*client)?;
        let aura = sc_consensus_aura::start_aura::<AuraPair, _, _, _, _, _, _, _, _, _, _>(
            StartAuraParams {
                slot_duration,
                client,
                select_chain,
                block_import,
                proposer_factory,
                create_inherent_data_providers: move |_, ()| async move {
                    let timestamp = sp_timestamp::InherentDataProvider::from_system_time();
                    let slot = sp_consensus_aura::inherents::InherentDataProvider::from_timestamp_and_slot_duration(
                        *timestamp,
                        slot_duration,
                    );
                    Ok((slot, timestamp))
                },
                force_authoring,
                backoff_authoring_blocks: None::<()>,
                keystore: keystore_container.keystore(),
                sync_oracle: sync_service.clone(),
                justification_sync_link: sync_service.clone(),
                block_proposal_slot_portion: SlotProportion::new(2f32 / 3f32),
                max_block_proposal_slot_portion: None,
                telemetry: None,
                compatibility_mode: Default::default(),
            },
        )?;
        task_manager
            .spawn_essential_handle()
            .spawn_blocking("aura", Some("block-authoring"), aura);
    }

    if enable_grandpa {
        let keystore = role.is_authority().then(|| keystore_container.keystore());
        let grandpa_config = sc_consensus_grandpa::Config {
            // A tenth of the 1 s slot: a round takes a few gossip periods, so a block is
            // finalized within its own slot or the next (docs/operations.md).
            gossip_duration: Duration::from_millis(100),
            justification_generation_period: GRANDPA_JUSTIFICATION_PERIOD,
            name: Some(name),
            observer_enabled: false,
            keystore,
            local_role: role,
            telemetry: None,
            protocol_name: grandpa_protocol_name,
        };
        let notification_service = grandpa_notification_service.ok_or_else(|| {
            ServiceError::Other("GRANDPA protocol was not registered; qed".into())
        })?;
        let grandpa_params = sc_consensus_grandpa::GrandpaParams {
            config: grandpa_config,
            link: grandpa_link,
            network,
            sync: Arc::new(sync_service),
            notification_service,
            // No voting rules: validators vote for their best block. The default rules
            // (vote at least 2 blocks behind the best, and at most 3/4 of the unfinalized
            // chain) kept finality about 3 blocks behind; see docs/operations.md.
            voting_rule: sc_consensus_grandpa::VotingRulesBuilder::new().build(),
            prometheus_registry,
            shared_voter_state: SharedVoterState::empty(),
            telemetry: None,
            offchain_tx_pool_factory: OffchainTransactionPoolFactory::new(transaction_pool),
        };
        task_manager.spawn_essential_handle().spawn_blocking(
            "grandpa-voter",
            None,
            sc_consensus_grandpa::run_grandpa_voter(grandpa_params)?,
        );
    }

    Ok(task_manager)
}
