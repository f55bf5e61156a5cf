//! The bridge's Prometheus endpoint, read for one gauge. A plain HTTP/1.0 GET over a
//! loopback socket: the bench needs one number, and no HTTP client crate is otherwise
//! built in the workspace.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A sample's value from the `/metrics` text at `address` (host:port).
pub async fn bridge_metric(address: &str, name: &str) -> Option<f64> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    sample(&text, name)
}

/// The finalized block the bridge's key cache reflects.
pub async fn bridge_cache_block(address: &str) -> Option<u64> {
    bridge_metric(address, "keymesh_bridge_cache_block")
        .await
        .map(|v| v as u64)
}

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_its_exact_name() {
        let text = "# HELP x\nkeymesh_bridge_cache_block_age 3\nkeymesh_bridge_cache_block 42\n";
        assert_eq!(sample(text, "keymesh_bridge_cache_block"), Some(42.0));
        assert_eq!(sample(text, "keymesh_bridge_missing"), None);
    }
}
