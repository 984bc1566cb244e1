//! The relay at a node that receives it: a trusted node of the path removes the pad of the
//! incoming hop, pads again for the next and forwards; the far end stores the keys (usable at
//! once in a one-pass relay, pending otherwise) and answers. Commits and the source's
//! questions about relays it did not hear back from travel the same way; the far end answers
//! them from its relay records (committed, or refused from then on when it never stored the
//! relay, so that a copy still under way is turned away).

use qkdn_proto::peer::v1::{CommitRelayRequest, RelayKeysReply, RelayKeysRequest};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::routes::{Routes, VirtRoute};
use super::{Relay, RelayError, SETTLED_FOR, hop_pads, padded};
use crate::kms::store::{Placement, RelayedKeys, Settle, now_ms};

impl Relay {
    /// A relay step arriving from the previous hop.
    pub async fn on_relay(&self, request: RelayKeysRequest) -> Result<RelayKeysReply, RelayError> {
        let relay = parse(&request.relay_id, "relay_id")?;
        if let Some(reply) = self.remembered(relay) {
            return Ok(reply);
        }
        let link = parse(&request.virt_link_id, "virt_link_id")?;
        let sender = parse(&request.sender_node_id, "sender_node_id")?;
        let hop_link = parse(&request.hop_link_id, "hop_link_id")?;
        let source = parse(&request.source_node_id, "source_node_id")?;
        let routes = self.routes.borrow().clone();
        let (link, route) = from_previous_hop(&routes, link, sender, Some(source))?;
        if routes.neighbours.get(&sender) != Some(&hop_link) {
            return Err(RelayError::Refused(format!(
                "link {hop_link} does not reach node {sender}"
            )));
        }
        if route.next.is_none() {
            // The far end: the keys come from the other end of the virtual link, in time.
            if self.stores.remote_of(link) != Some(source) {
                return Err(RelayError::Refused(format!(
                    "node {source} is not the other end of virtual link {link}"
                )));
            }
            if request.expires_ms <= now_ms() {
                return Err(RelayError::Refused(format!("relay {relay} expired on its way")));
            }
        }
        let key_bytes = request.key_size_bits as usize / 8;
        let n = request.key_ids.len();
        if request.key_size_bits != self.key_bits
            || request.pads.len() != n
            || request.ciphertext.len() != n * key_bytes
            || request.position_step > 2
        {
            return Err(RelayError::Refused("inconsistent relay request".into()));
        }
        let placement =
            Placement { sequence: request.sequence, step: u64::from(request.position_step.max(1)) };
        let pad_ids = request
            .pads
            .iter()
            .map(|p| p.key_ids.iter().map(|id| parse(id, "pads")).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let pads = self.stores.use_pads(hop_link, sender, &pad_ids).await?;
        if pads.iter().any(|p| p.len() < key_bytes) {
            return Err(RelayError::Refused("a pad is shorter than its key".into()));
        }
        let mut keys = Vec::with_capacity(n);
        for (i, id) in request.key_ids.iter().enumerate() {
            let mut key =
                Zeroizing::new(request.ciphertext[i * key_bytes..(i + 1) * key_bytes].to_vec());
            key.iter_mut().zip(pads[i].iter()).for_each(|(k, p)| *k ^= p);
            keys.push((parse(id, "key_ids")?, key));
        }
        let reply = match route.next {
            None => {
                // One pass: the source holds its copy, so these are usable at once, and the
                // outcome is kept for a source that did not hear this answer.
                let usable = request.stored_at_source;
                let now = now_ms();
                let expires_ms = if usable {
                    request.expires_ms.max(now + SETTLED_FOR.as_millis() as u64)
                } else {
                    request.expires_ms
                };
                let relayed = RelayedKeys {
                    relay,
                    placement,
                    keys,
                    expires_ms,
                    source: false,
                    usable,
                    now_ms: now,
                };
                self.stores.put_relayed(link, relayed).await?;
                RelayKeysReply { stored: n as u32, committed: usable }
            }
            Some(next) => {
                let next_link = *routes
                    .neighbours
                    .get(&next)
                    .ok_or_else(|| RelayError::Refused(format!("no physical link to {next}")))?;
                let next_pads = self.stores.take_pads(next_link, n, self.key_bits).await?;
                let forward = RelayKeysRequest {
                    sender_node_id: self.node.to_string(),
                    hop_link_id: next_link.to_string(),
                    pads: hop_pads(&next_pads),
                    ciphertext: padded(&keys, next_pads.iter().map(|p| p.bytes.as_slice())),
                    ..request
                };
                self.clients.relay_keys(next, forward).await?
            }
        };
        self.remember(relay, reply);
        Ok(reply)
    }

    /// A commit, or a source's question about a relay, arriving from the previous hop: whether
    /// the far end holds the relay committed.
    pub async fn on_commit(&self, request: CommitRelayRequest) -> Result<bool, RelayError> {
        let relay = parse(&request.relay_id, "relay_id")?;
        let link = parse(&request.virt_link_id, "virt_link_id")?;
        let sender = parse(&request.sender_node_id, "sender_node_id")?;
        // A link held under another name here is the one the relay is recorded under; with no
        // record, the source the request names stands for it.
        let origin = match self.stores.recorded_relay_link(relay).await {
            Some(recorded) => self.stores.remote_of(recorded),
            None if request.source_node_id.is_empty() => None,
            None => Some(parse(&request.source_node_id, "source_node_id")?),
        };
        let (link, route) = from_previous_hop(&self.routes.borrow(), link, sender, origin)?;
        match route.next {
            None => {
                let settle = Settle {
                    keep_until: Some(now_ms() + SETTLED_FOR.as_millis() as u64),
                    refuse_until: (request.refuse_until_ms > 0).then_some(request.refuse_until_ms),
                };
                Ok(self.stores.commit_relay(link, relay, settle).await?)
            }
            Some(next) => {
                let forward =
                    CommitRelayRequest { sender_node_id: self.node.to_string(), ..request };
                self.clients.commit_relay(next, forward).await.map_err(RelayError::from)
            }
        }
    }
}

/// Virtual link `link` as this node routes it (its id here, and its route), when `sender` is
/// its previous hop, for a message on behalf of `origin` (see [`Routes::resolve`]).
fn from_previous_hop(
    routes: &Routes,
    link: Uuid,
    sender: Uuid,
    origin: Option<Uuid>,
) -> Result<(Uuid, VirtRoute), RelayError> {
    let (here, route) =
        routes.resolve(link, sender, origin).map_err(|e| RelayError::Refused(e.to_string()))?;
    if route.prev != Some(sender) {
        return Err(RelayError::Refused(format!(
            "node {sender} is not the previous hop of virtual link {link}"
        )));
    }
    Ok((here, route))
}

fn parse(text: &str, field: &str) -> Result<Uuid, RelayError> {
    Uuid::parse_str(text)
        .map_err(|_| RelayError::Refused(format!("{field}: \"{text}\" is not a UUID")))
}
