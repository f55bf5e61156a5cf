//! What a sender reads on its status topic when an envelope is refused.

use keymesh_device::mqtt;
use serde::Serialize;

use crate::gate::{Reason, Refused, Target};

#[derive(Debug, Serialize)]
struct RefusalNotice<'a> {
    reason: &'static str,
    message_id: Option<String>,
    target: Option<String>,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    presented: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    /// The finalized block the check used.
    block: u32,
}

fn target_text(target: &Target) -> String {
    match target {
        Target::Device(id) => id.clone(),
        Target::Group(id) => format!("grp/{id}"),
    }
}

/// The status topic and JSON notice of `refused`, checked at finalized block `block`.
pub fn refusal(refused: &Refused, block: u32) -> Option<(String, Vec<u8>)> {
    let (presented, expected) = match &refused.reason {
        Reason::KeyMismatch {
            presented,
            expected,
        } => (Some(hex::encode(presented)), Some(hex::encode(expected))),
        _ => (None, None),
    };
    let notice = RefusalNotice {
        reason: refused.reason.code(),
        message_id: refused.message_id.map(hex::encode),
        target: refused.target.as_ref().map(target_text),
        detail: &refused.detail,
        presented,
        expected,
        block,
    };
    let json = serde_json::to_vec(&notice).ok()?;
    Some((mqtt::status_topic(&refused.reported_to), json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_state_notice_names_its_code_and_block() {
        let refused = Refused {
            reason: Reason::StaleState,
            reported_to: "1111".into(),
            target: Some(Target::Group("B".into())),
            message_id: Some([7; 16]),
            detail: "finalized head #30 is 40000 ms old".into(),
            consumed: None,
        };
        let (topic, json) = refusal(&refused, 30).unwrap();
        assert_eq!(topic, mqtt::status_topic("1111"));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["reason"], "StaleState");
        assert_eq!(value["target"], "grp/B");
        assert_eq!(value["block"], 30);
        assert_eq!(value["message_id"], hex::encode([7u8; 16]));
    }
}
