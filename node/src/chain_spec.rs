//! Chain specifications built from the runtime's genesis presets.

use keymesh_runtime::WASM_BINARY;
use sc_service::ChainType;

/// A chain specification with no node-side extensions.
pub type ChainSpec = sc_service::GenericChainSpec;

fn properties() -> sc_service::Properties {
    let mut p = sc_service::Properties::new();
    p.insert("tokenSymbol".into(), "KMT".into());
    p.insert("tokenDecimals".into(), 12.into());
    p.insert("ss58Format".into(), 42.into());
    p
}

fn wasm() -> Result<&'static [u8], String> {
    WASM_BINARY.ok_or_else(|| "the runtime wasm was not built (SKIP_WASM_BUILD?)".to_string())
}

/// `--dev`: Alice alone authors and finalizes.
pub fn development() -> Result<ChainSpec, String> {
    Ok(ChainSpec::builder(wasm()?, None)
        .with_name("KeyMesh Development")
        .with_id("keymesh_dev")
        .with_chain_type(ChainType::Development)
        .with_genesis_config_preset_name(sp_genesis_builder_names::DEV)
        .with_properties(properties())
        .build())
}

/// `--chain local`: Alice, Bob, Charlie and Dave validate.
pub fn local_testnet() -> Result<ChainSpec, String> {
    Ok(ChainSpec::builder(wasm()?, None)
        .with_name("KeyMesh Local Testnet")
        .with_id("keymesh_local")
        .with_chain_type(ChainType::Local)
        .with_genesis_config_preset_name(sp_genesis_builder_names::LOCAL)
        .with_properties(properties())
        .build())
}

/// The preset names the runtime declares (`sp_genesis_builder`'s well-known ids).
mod sp_genesis_builder_names {
    pub const DEV: &str = "development";
    pub const LOCAL: &str = "local_testnet";
}
