//! The bridge's QoS 1 publishes, numbered in the order its event loop sends them, and the
//! mark below which the broker has acknowledged every one of them.
//!
//! rumqttc's `publish` only queues a request; the broker has the message once its PUBACK
//! comes back. A forward is finished (its replay-journal entry closed) only then: a bridge
//! killed between the two would otherwise have closed an id whose delivery never left the
//! process, and the broker's redelivery of the ingress message would be refused as a
//! replay.
//!
//! [`Outbox`] numbers each publish under a lock held while it is queued, so the numbers
//! follow the event loop's order. [`Acks`] (protocol state, no I/O, driven by the poll
//! task) maps each packet id to its number as the event loop sends it, across resends on a
//! resumed session and fresh packet ids on a new one.

use std::collections::{BTreeSet, HashMap, VecDeque};

use rumqttc::{AsyncClient, ClientError, QoS, Request};
use tokio::sync::{watch, Mutex};

/// Every QoS 1 publish of the bridge's broker session goes through here.
pub struct Outbox {
    client: AsyncClient,
    next: Mutex<u64>,
}

impl Outbox {
    pub fn new(client: AsyncClient) -> Self {
        Self {
            client,
            next: Mutex::new(0),
        }
    }

    /// Queues a QoS 1 publish and returns its number: it has reached the broker once the
    /// acknowledged mark ([`Acks::mark`]) is above it.
    pub async fn publish(
        &self,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<u64, ClientError> {
        let mut next = self.next.lock().await;
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await?;
        let number = *next;
        *next += 1;
        Ok(number)
    }
}

/// Which numbered publishes the broker has acknowledged.
pub struct Acks {
    /// Packet id in flight to its publish's number.
    in_flight: HashMap<u16, u64>,
    /// Numbers sent and not acknowledged.
    unacked: BTreeSet<u64>,
    /// The number the next fresh publish the event loop sends will have.
    next_sent: u64,
    /// Numbers of the publishes set aside at the last failure, in the order they are sent
    /// again if the broker starts a new session.
    set_aside: Vec<u64>,
    /// The next publishes sent that are those set-aside ones, under new packet ids.
    resending: VecDeque<u64>,
    mark: watch::Sender<u64>,
}

impl Default for Acks {
    fn default() -> Self {
        Self::new()
    }
}

impl Acks {
    pub fn new() -> Self {
        Self {
            in_flight: HashMap::new(),
            unacked: BTreeSet::new(),
            next_sent: 0,
            set_aside: Vec::new(),
            resending: VecDeque::new(),
            mark: watch::channel(0).0,
        }
    }

    /// Every publish numbered below the mark has been acknowledged by the broker.
    pub fn mark(&self) -> watch::Receiver<u64> {
        self.mark.subscribe()
    }

    /// The event loop sent a publish (`Outgoing::Publish`).
    pub fn sent(&mut self, pkid: u16) {
        if pkid == 0 || self.in_flight.contains_key(&pkid) {
            // QoS 0, or sent again under its packet id on a resumed session.
            return;
        }
        let number = match self.resending.pop_front() {
            Some(number) => number,
            None => {
                let number = self.next_sent;
                self.next_sent += 1;
                number
            }
        };
        self.in_flight.insert(pkid, number);
        self.unacked.insert(number);
        self.update_mark();
    }

    /// The broker acknowledged a publish (`Incoming::PubAck`).
    pub fn acknowledged(&mut self, pkid: u16) {
        if let Some(number) = self.in_flight.remove(&pkid) {
            self.unacked.remove(&number);
            self.update_mark();
        }
    }

    /// The connection failed with `pending` left to send: remembers, in that order, which
    /// numbers those already sent carry.
    pub fn failed(&mut self, pending: &VecDeque<Request>) {
        self.set_aside = pending
            .iter()
            .filter_map(|request| match request {
                Request::Publish(p) if p.qos != QoS::AtMostOnce && p.pkid != 0 => {
                    self.in_flight.get(&p.pkid).copied()
                }
                _ => None,
            })
            .collect();
    }

    /// The broker started a new session: the set-aside publishes go out again under new
    /// packet ids, ahead of anything new. One sent and not set aside will never be
    /// acknowledged, nor resent; it no longer holds the mark back.
    pub fn new_session(&mut self) {
        self.in_flight.clear();
        self.resending = std::mem::take(&mut self.set_aside).into();
        self.unacked.retain(|n| self.resending.contains(n));
        self.update_mark();
    }

    fn update_mark(&mut self) {
        let mark = self
            .unacked
            .first()
            .copied()
            .unwrap_or(self.next_sent)
            .min(self.next_sent);
        self.mark.send_if_modified(|m| {
            let moved = *m != mark;
            *m = mark;
            moved
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::Publish;

    fn publish(pkid: u16) -> Request {
        let mut p = Publish::new("t", QoS::AtLeastOnce, vec![1]);
        p.pkid = pkid;
        Request::Publish(p)
    }

    #[test]
    fn the_mark_rises_only_over_acknowledged_publishes() {
        let mut acks = Acks::new();
        let mark = acks.mark();
        acks.sent(1);
        acks.sent(2);
        assert_eq!(*mark.borrow(), 0);
        acks.acknowledged(2);
        assert_eq!(*mark.borrow(), 0, "0 is still unacknowledged");
        acks.acknowledged(1);
        assert_eq!(*mark.borrow(), 2);
        acks.acknowledged(7);
        assert_eq!(*mark.borrow(), 2, "an unsolicited ack moves nothing");
    }

    #[test]
    fn a_packet_id_used_again_after_its_ack_is_a_new_publish() {
        let mut acks = Acks::new();
        acks.sent(1);
        acks.acknowledged(1);
        acks.sent(1);
        assert_eq!(*acks.mark().borrow(), 1);
        acks.acknowledged(1);
        assert_eq!(*acks.mark().borrow(), 2);
    }

    #[test]
    fn a_resumed_session_resends_under_the_same_packet_ids() {
        let mut acks = Acks::new();
        acks.sent(1);
        acks.sent(2);
        acks.failed(&[publish(1), publish(2)].into());
        // Resent as they were: no new numbers.
        acks.sent(1);
        acks.sent(2);
        acks.sent(3);
        acks.acknowledged(1);
        acks.acknowledged(2);
        assert_eq!(*acks.mark().borrow(), 2);
        acks.acknowledged(3);
        assert_eq!(*acks.mark().borrow(), 3);
    }

    #[test]
    fn a_new_session_resends_set_aside_publishes_under_new_packet_ids() {
        let mut acks = Acks::new();
        acks.sent(1); // number 0
        acks.sent(2); // number 1
        acks.acknowledged(1);
        // Number 1 in flight, and a request never sent (packet id 0) behind it.
        acks.failed(&[publish(2), publish(0)].into());
        acks.new_session();
        assert_eq!(*acks.mark().borrow(), 1);
        acks.sent(5); // number 1 again
        acks.sent(6); // number 2, the unsent one
        acks.acknowledged(6);
        assert_eq!(*acks.mark().borrow(), 1, "number 1 is not acknowledged yet");
        acks.acknowledged(5);
        assert_eq!(*acks.mark().borrow(), 3);
    }

    #[test]
    fn a_publish_lost_with_the_session_does_not_hold_the_mark() {
        let mut acks = Acks::new();
        acks.sent(1);
        acks.failed(&VecDeque::new());
        acks.new_session();
        assert_eq!(*acks.mark().borrow(), 1);
    }
}
