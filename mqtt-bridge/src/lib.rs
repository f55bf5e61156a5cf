//! The KeyMesh MQTT bridge.
//!
//! So far it owns the topic layout that devices and the bridge share; the gate, the
//! chain follower and the forwarder arrive with the bridge issue.

use keymesh_primitives::{validate_id, IdError};

/// Topic a device publishes its envelopes to: `km/v1/in/<sender>`.
pub fn ingress_topic(sender: &str) -> Result<String, IdError> {
    validate_id(sender.as_bytes())?;
    Ok(format!("km/v1/in/{sender}"))
}

/// Topic the bridge delivers a device's direct messages to: `km/v1/dev/<device>/inbox`.
pub fn inbox_topic(device: &str) -> Result<String, IdError> {
    validate_id(device.as_bytes())?;
    Ok(format!("km/v1/dev/{device}/inbox"))
}

/// The sender named by an ingress topic, if the topic is one.
pub fn sender_of_ingress(topic: &str) -> Option<&str> {
    let sender = topic.strip_prefix("km/v1/in/")?;
    validate_id(sender.as_bytes()).ok().map(|()| sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_refuse_wildcards() {
        let topic = ingress_topic("1111").expect("valid id");
        assert_eq!(topic, "km/v1/in/1111");
        assert_eq!(sender_of_ingress(&topic), Some("1111"));
        assert_eq!(inbox_topic("1113").as_deref(), Ok("km/v1/dev/1113/inbox"));
        assert!(ingress_topic("#").is_err());
        assert_eq!(sender_of_ingress("km/v1/in/a/b"), None);
        assert_eq!(sender_of_ingress("km/v1/dev/1111/inbox"), None);
    }
}
