//! The `--dev` chain: a single validator that authors and finalizes, and keeps its chain
//! across restarts.

mod common;

use std::time::{Duration, Instant};

use common::Node;

#[tokio::test(flavor = "multi_thread")]
async fn dev_chain_finalizes_block_5_within_30_seconds_of_start() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut node = Node::start("dev", dir.path(), &["--dev"]);
    let rpc = node.wait_ready(Duration::from_secs(30)).await;
    let left = Duration::from_secs(30).saturating_sub(started.elapsed());
    let finalized = rpc
        .wait_finalized(5, left)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail()));
    assert!(finalized >= 5);
    println!(
        "dev chain: finalized #{finalized} {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_chain_continues_from_its_base_path_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("durable", dir.path(), &["--dev"]);
    let rpc = node.wait_ready(Duration::from_secs(30)).await;
    rpc.wait_finalized(3, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail()));
    let (finalized, finalized_hash) = rpc.finalized_head().await.unwrap();

    node.stop();
    node.restart();
    let rpc = node.wait_ready(Duration::from_secs(30)).await;
    let best_after_restart = rpc.best_number().await.unwrap();
    assert!(
        best_after_restart >= finalized,
        "restarted at #{best_after_restart} below finalized #{finalized}: a new chain\n{}",
        node.log_tail()
    );
    assert_eq!(
        rpc.block_hash(finalized).await.unwrap(),
        finalized_hash,
        "history was rewritten"
    );
    // It keeps authoring and finalizing on top of the old chain.
    rpc.wait_finalized(best_after_restart + 2, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail()));
    assert_eq!(rpc.block_hash(finalized).await.unwrap(), finalized_hash);
}
