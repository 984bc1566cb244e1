//! Segments of services that cross domains (asked for by an orchestrator): this controller
//! writes the service's virtual link on the nodes of its segment, continuing from the node
//! before it and towards the node after it in the neighbouring domains, reserves the rate on
//! the segment's links in its domain, and writes the application at the service's ends it
//! holds. The path is the orchestrator's; it is checked, not chosen, here.

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Core, Pending};
use crate::apps::{AppSpec, AppState, Application, Leg, Segment};
use crate::error::ApiError;
use crate::records::{Op, Table};

impl Core {
    /// Provisions segment `nodes` of service link `link` for `spec`.
    pub(super) async fn deploy_segment(
        &mut self,
        spec: AppSpec,
        link: Uuid,
        nodes: Vec<Uuid>,
        segment: Segment,
        reply: oneshot::Sender<Result<(Application, bool), ApiError>>,
    ) {
        let id = spec.app_id;
        if let Some(existing) = self.apps.get(&id) {
            let same = existing.spec == spec
                && existing.segment.as_ref() == Some(&segment)
                && existing.legs.first().is_some_and(|l| l.nodes == nodes && l.link == link);
            let answer = if same && existing.state != AppState::Provisioning {
                Ok((existing.clone(), false))
            } else if same {
                Err(ApiError::Unavailable(format!("segment {id} is being provisioned; retry")))
            } else {
                Err(ApiError::Conflict(format!(
                    "application {id} is registered with other content"
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        if !self.settled || self.busy.contains_key(&id) {
            let _ = reply.send(Err(ApiError::Unavailable(
                "the controller is not ready for this segment; retry".into(),
            )));
            return;
        }
        if let Err(e) = self.pair_free(&spec) {
            let _ = reply.send(Err(e));
            return;
        }
        let links = match self.segment_links(&nodes, &segment, spec.qos.demand_bps()) {
            Ok(l) => l,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let client = spec.clients[0].node;
        let app = Application {
            spec,
            state: AppState::Provisioning,
            reason: None,
            legs: vec![Leg { client_node: client, link, nodes, links }],
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            reroutes: 0,
            candidates: Vec::new(),
            segment: Some(segment),
        };
        let ops = vec![Op::put(Table::Applications, id.to_string(), &app)];
        self.apps.insert(id, app);
        self.dirty = true;
        self.converge(id, Pending::Create(reply), ops).await;
    }

    /// The links of this domain along the segment (with its neighbouring hops), each checked
    /// to be up with `rate` spare.
    fn segment_links(
        &self,
        nodes: &[Uuid],
        segment: &Segment,
        rate: u64,
    ) -> Result<Vec<Uuid>, ApiError> {
        if nodes.is_empty() {
            return Err(ApiError::field("/path_qkdn_id", "a segment needs at least one node"));
        }
        for n in nodes {
            if !self.network.nodes.contains_key(n) {
                return Err(ApiError::NotFound(format!(
                    "node {n} of the segment is not in this controller's domain"
                )));
            }
        }
        let chain: Vec<Uuid> = segment
            .upstream
            .into_iter()
            .chain(nodes.iter().copied())
            .chain(segment.downstream)
            .collect();
        let (promised, _) = self.reservations(None);
        let mut links = Vec::new();
        for pair in chain.windows(2) {
            // Hops to nodes of other domains are theirs to reserve.
            if !(self.network.nodes.contains_key(&pair[0])
                && self.network.nodes.contains_key(&pair[1]))
            {
                continue;
            }
            let Some(l) = self.network.link_between(pair[0], pair[1]) else {
                return Err(ApiError::Conflict(format!(
                    "no usable physical link between {} and {}",
                    pair[0], pair[1]
                )));
            };
            let spare = l.skr_bps.saturating_sub(promised.get(&l.id).copied().unwrap_or(0));
            if spare < rate {
                return Err(ApiError::Conflict(format!(
                    "no path with {rate} bit/s spare: physical link {} between {} and {} offers {spare} bit/s",
                    l.id, pair[0], pair[1]
                )));
            }
            links.push(l.id);
        }
        Ok(links)
    }
}
