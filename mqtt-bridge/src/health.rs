//! What the bridge says of itself: `/metrics` (Prometheus), `/healthz` (the process
//! answers) and `/readyz` (it can forward: connected and caught up with finalized state
//! that is fresh, subscribed to ingress at the broker, journals writable, listed on chain).
//!
//! A not-ready answer is 503 with one line per reason, so an operator's probe and an
//! operator both read it.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use substrate_prometheus_endpoint::{
    prometheus::{Encoder, TextEncoder},
    Registry,
};
use tokio::{net::TcpListener, sync::watch};

use crate::gate::Snapshot;

/// The conditions `/readyz` reports, each kept by the task that knows it.
pub struct Health {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub caught_up: watch::Receiver<bool>,
    /// Connected to the broker and subscribed to ingress.
    pub ingress: watch::Receiver<bool>,
    /// The last journal write went through.
    pub journals_writable: AtomicBool,
    pub max_staleness_ms: u64,
}

impl Health {
    /// Why the bridge cannot forward now; empty when it can.
    pub fn not_ready(&self, now_ms: u64) -> Vec<String> {
        let mut reasons = Vec::new();
        let snapshot = self.snapshot.borrow().clone();
        if !*self.caught_up.borrow() {
            reasons.push(format!(
                "not caught up with finalized state (last applied #{})",
                snapshot.block_number
            ));
        }
        let age_ms = now_ms.saturating_sub(snapshot.timestamp_ms);
        if age_ms > self.max_staleness_ms {
            reasons.push(format!(
                "finalized head #{} is {age_ms} ms old (max_staleness {} ms)",
                snapshot.block_number, self.max_staleness_ms
            ));
        }
        if !snapshot.bridge_listed {
            reasons.push("the exchange log does not list this bridge".into());
        }
        if !*self.ingress.borrow() {
            reasons.push("not subscribed to ingress at the broker".into());
        }
        if !self.journals_writable.load(Ordering::Relaxed) {
            reasons.push("a journal in the state directory cannot be written".into());
        }
        reasons
    }

    pub fn set_journals_writable(&self, writable: bool) {
        let was = self.journals_writable.swap(writable, Ordering::Relaxed);
        if was && !writable {
            tracing::error!("journals not writable: nothing is forwarded until they are");
        } else if !was && writable {
            tracing::info!("journals writable again: forwarding resumes");
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn respond(path: &str, health: &Health, registry: &Registry) -> Response<Full<Bytes>> {
    match path {
        "/healthz" => text(StatusCode::OK, "alive\n".into()),
        "/readyz" => {
            let reasons = health.not_ready(crate::clock::now_ms());
            if reasons.is_empty() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready\n{}\n", reasons.join("\n")),
                )
            }
        }
        "/metrics" => {
            let mut body = Vec::new();
            match TextEncoder::new().encode(&registry.gather(), &mut body) {
                Ok(()) => text(StatusCode::OK, String::from_utf8_lossy(&body).into_owned()),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves the three endpoints on `listener` for ever.
pub async fn serve(listener: TcpListener, health: Arc<Health>, registry: Registry) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("health endpoint: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (health, registry) = (health.clone(), registry.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(request.uri().path(), &health, &registry);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("health endpoint connection: {e}");
            }
        });
    }
}

/// Keeps `cache_age_seconds` current: the age of the finalized head, by its timestamp.
pub async fn track_age(snapshot: watch::Receiver<Arc<Snapshot>>, metrics: crate::metrics::Metrics) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let head_ms = snapshot.borrow().timestamp_ms;
        let age = crate::clock::now_ms().saturating_sub(head_ms) / 1000;
        metrics.cache_age.set(age);
    }
}
