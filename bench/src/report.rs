//! The report: the seed paper's figures with KeyMesh's beside them, read from the JSON lines
//! `scripts/bench.sh` collected, and a plot of latency against device count.
//!
//! Each input line is `{"net": "dev" | "local4", "devices": n, "result": {...}}`, where
//! `result` is what one `keymesh-bench` subcommand or the `data_plane` example printed.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use crate::registration::BenchError;

/// One collected measurement.
struct Line {
    net: String,
    devices: u64,
    result: Value,
}

fn read(path: &Path) -> Result<Vec<Line>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Report(format!("{}: {e}", path.display())))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l)
                .map_err(|e| BenchError::Report(format!("{}:{}: {e}", path.display(), i + 1)))?;
            Ok(Line {
                net: v["net"].as_str().unwrap_or_default().to_string(),
                devices: v["devices"].as_u64().unwrap_or(0),
                result: v["result"].clone(),
            })
        })
        .collect()
}

/// The measurement of `figure` on `net` at the largest device count up to `at_most`.
fn pick<'a>(lines: &'a [Line], net: &str, figure: &str, at_most: u64) -> Option<&'a Line> {
    lines
        .iter()
        .filter(|l| l.net == net && l.result["figure"] == figure && l.devices <= at_most)
        .max_by_key(|l| l.devices)
}

fn seconds(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn show(v: Option<f64>) -> String {
    match v {
        Some(s) if s < 0.1 => format!("{:.2} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
        None => "—".into(),
    }
}

fn ratio(seed: f64, ours: Option<f64>) -> String {
    match ours {
        Some(o) if o > 0.0 && o <= seed => format!("{:.1}× faster", seed / o),
        Some(o) if o > 0.0 => format!("{:.1}× slower", o / seed),
        _ => "—".into(),
    }
}

/// A row comparing one figure on both networks with the seed.
fn both_nets(lines: &[Line], figure: &str, field: &str, at: u64) -> (Option<f64>, Option<f64>) {
    let get = |net| pick(lines, net, figure, at).and_then(|l| seconds(&l.result[field]));
    (get("dev"), get("local4"))
}

/// Prints the table (Markdown) to stdout.
fn table(lines: &[Line]) {
    println!("| figure | seed (100 devices) | KeyMesh dev chain | KeyMesh 4 validators | vs seed (dev) |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, seed: Option<f64>, (dev, local): (Option<f64>, Option<f64>)| {
        let seed_text = seed.map_or("—".to_string(), |s| show(Some(s)));
        let vs = seed.map_or("—".to_string(), |s| ratio(s, dev.or(local)));
        println!(
            "| {name} | {seed_text} | {} | {} | {vs} |",
            show(dev),
            show(local)
        );
    };
    row(
        "registration until usable (finalized), p50 of 20, at 100 devices",
        Some(3.78),
        both_nets(lines, "registration_until_finalized", "p50_s", 100),
    );
    row(
        "1,000 registrations submitted at once: all finalized",
        None,
        both_nets(lines, "bulk_registration", "all_finalized_s", u64::MAX),
    );
    row(
        "…until the bridge can use them",
        None,
        both_nets(lines, "bulk_registration", "bridge_usable_s", u64::MAX),
    );
    row(
        "topic registration (group and 4 members to a finalized key), p50",
        Some(0.8),
        both_nets(lines, "topic_registration", "p50_s", 100),
    );
    row(
        "`keymesh_checkKey` p50, at 1,000+ devices",
        Some(3.211),
        both_nets(lines, "check_key", "p50_s", u64::MAX),
    );
    row(
        "`keymesh_checkKey` p99, at 1,000+ devices",
        None,
        both_nets(lines, "check_key", "p99_s", u64::MAX),
    );
    let plane = pick(lines, "dev", "data_plane", u64::MAX).map(|l| &l.result);
    let field = |name: &str| plane.and_then(|p| seconds(&p[name]));
    row(
        "1 MiB send, seal to open through the bridge, p50",
        Some(0.823),
        (field("send_1mib_p50_s"), None),
    );
    row(
        "topic transmission 256 B, seal to open, p50",
        Some(0.829),
        (field("topic_256b_p50_s"), None),
    );
    if let Some(log) = plane.map(|p| &p["exchange_log"]) {
        println!(
            "| exchange log after a burst of {:.0} forwards | — | {:.0} records behind; drained in {} | — | — |",
            log["forwards"].as_f64().unwrap_or(0.0),
            log["backlog_at_end"].as_f64().unwrap_or(0.0),
            show(seconds(&log["drained_s"])),
        );
    }
    if let Some(t) = plane.map(|p| &p["throughput"]) {
        println!(
            "| gated throughput, 256 B, against the same broker alone | — | {:.0} against {:.0} msg/s: {:.1} % | — | the generator alone puts in {:.0} msg/s (publishes nobody reads); it handed over {:.0} (gated) and {:.0} (alone) msg/s; the broker acknowledged {:.0} and {:.0} |",
            t["gated_msg_s"].as_f64().unwrap_or(0.0),
            t["broker_alone_msg_s"].as_f64().unwrap_or(0.0),
            100.0 * t["gated_share"].as_f64().unwrap_or(0.0),
            t["generator_alone_msg_s"].as_f64().unwrap_or(0.0),
            t["gated_handed_over_msg_s"].as_f64().unwrap_or(0.0),
            t["broker_alone_handed_over_msg_s"].as_f64().unwrap_or(0.0),
            t["gated_acknowledged_msg_s"].as_f64().unwrap_or(0.0),
            t["broker_alone_acknowledged_msg_s"].as_f64().unwrap_or(0.0),
        );
        println!(
            "| bridge CPU time per gated message | — | {:.0} µs | — | — |",
            t["bridge_cpu_us_per_message"].as_f64().unwrap_or(0.0)
        );
        let c = &t["crypto_ceiling"];
        println!(
            "| ceiling of any gate that verifies and attests each envelope: {:.0} cores doing only that | — | {:.0} msg/s: {:.1} % of the broker alone | — | RSA verification alone {:.0} msg/s, attestation alone {:.0} msg/s |",
            c["threads"].as_f64().unwrap_or(0.0),
            c["both_msg_s"].as_f64().unwrap_or(0.0),
            100.0 * t["crypto_ceiling_share"].as_f64().unwrap_or(0.0),
            c["verify_msg_s"].as_f64().unwrap_or(0.0),
            c["attest_msg_s"].as_f64().unwrap_or(0.0),
        );
    }
}

/// The series of the plot: (label, net, figure, field).
const SERIES: [(&str, &str, &str, &str); 6] = [
    (
        "registration p50, dev",
        "dev",
        "registration_until_finalized",
        "p50_s",
    ),
    (
        "registration p50, 4 validators",
        "local4",
        "registration_until_finalized",
        "p50_s",
    ),
    (
        "topic registration p50, dev",
        "dev",
        "topic_registration",
        "p50_s",
    ),
    (
        "topic registration p50, 4 validators",
        "local4",
        "topic_registration",
        "p50_s",
    ),
    ("checkKey p50, dev", "dev", "check_key", "p50_s"),
    ("checkKey p50, 4 validators", "local4", "check_key", "p50_s"),
];

/// Latency (log scale) against device count (log scale), one line per series.
fn plot(lines: &[Line], svg: &Path) -> Result<(), BenchError> {
    let failed = |e: &dyn std::fmt::Display| BenchError::Report(format!("{}: {e}", svg.display()));
    let root = SVGBackend::new(svg, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("KeyMesh latency against device count", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((2u64..2000u64).log_scale(), (1e-4f64..20f64).log_scale())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("devices registered")
        .y_desc("seconds")
        .draw()
        .map_err(|e| failed(&e))?;
    for (i, (label, net, figure, field)) in SERIES.iter().enumerate() {
        let mut points: Vec<(u64, f64)> = lines
            .iter()
            .filter(|l| l.net == *net && l.result["figure"] == *figure && l.devices > 0)
            .filter_map(|l| Some((l.devices, seconds(&l.result[*field])?)))
            .collect();
        points.sort_by_key(|p| p.0);
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

/// Prints the table and writes the plot; the number of lines read, as JSON.
pub fn run(results: &Path, svg: &Path) -> Result<serde_json::Value, BenchError> {
    let lines = read(results)?;
    table(&lines);
    plot(&lines, svg)?;
    Ok(serde_json::json!({
        "figure": "report",
        "lines": lines.len(),
        "plot": svg.display().to_string(),
    }))
}
