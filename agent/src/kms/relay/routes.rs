//! The paths relayed keys take from this node: each virtual link's previous and next hop as
//! the 015 configuration gives them, the physical link to each neighbour, and the resolution
//! of a link named by its other end (TeraFlowSDN names the two directions of a path apart).

use std::collections::HashMap;

use uuid::Uuid;

/// A virtual link as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtRoute {
    /// The previous node (none at the source).
    pub prev: Option<Uuid>,
    /// The next node (none at the far end).
    pub next: Option<Uuid>,
    /// The far end, as the source sees it.
    pub far_end: Option<Uuid>,
    /// `virt_bandwidth`, bit/s.
    pub bandwidth: u32,
    /// `qkdl_enable`.
    pub enabled: bool,
}

/// The paths keys can take from this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// Virtual links through or from this node.
    pub virt: HashMap<Uuid, VirtRoute>,
    /// Physical link to each neighbour.
    pub neighbours: HashMap<Uuid, Uuid>,
}

impl Routes {
    /// The neighbour to send a message about virtual `link` to, towards `target` (an end of
    /// the link) or away from `sender` (the previous hop of a forwarded message).
    pub fn toward(&self, link: Uuid, from: Option<Uuid>) -> Option<Uuid> {
        let route = self.virt.get(&link)?;
        match from {
            Some(sender) if route.prev == Some(sender) => route.next,
            Some(sender) if route.next == Some(sender) => route.prev,
            Some(_) => None,
            // From an end: the only side there is.
            None => route.next.or(route.prev),
        }
    }
}

impl Routes {
    /// Virtual `link` as this node routes a message about it arriving from neighbour `sender`
    /// on behalf of `origin` (the link's other end): this node's own id for the link, and the
    /// route. A link this node does not hold may be the other end's name for one that ends
    /// here: TeraFlowSDN names the two directions of a path with two ids, and writes each at
    /// every node but its destination, so the destination of one holds only the other, which
    /// starts here and goes back over the same first hop to the same node. That link, found by
    /// its far end and its first hop among the links this node sources, stands for the
    /// message's link, with this node as its far end. More than one such link is refused as
    /// ambiguous.
    pub fn resolve(
        &self,
        link: Uuid,
        sender: Uuid,
        origin: Option<Uuid>,
    ) -> Result<(Uuid, VirtRoute), RouteError> {
        if let Some(route) = self.virt.get(&link) {
            return Ok((link, route.clone()));
        }
        let mut twins = self
            .virt
            .iter()
            .filter(|(_, r)| r.prev.is_none() && r.next == Some(sender) && r.far_end == origin);
        match (twins.next(), twins.next()) {
            (Some((id, route)), None) => {
                Ok((*id, VirtRoute { prev: Some(sender), next: None, ..route.clone() }))
            }
            (None, _) => Err(RouteError::Unknown(link)),
            (Some((one, _)), Some((two, _))) => {
                Err(RouteError::Ambiguous { link, one: *one, two: *two })
            }
        }
    }
}

/// Why a relay message's link does not resolve here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No virtual link of that ID, and none leading back to its other end.
    #[error("no virtual link {0} here")]
    Unknown(Uuid),
    /// Not held here, and two links lead back to its other end over the same hop.
    #[error(
        "virtual link {link} is not held here, and links {one} and {two} both lead back to its other end over the same hop: give its far end an entry of its own"
    )]
    Ambiguous {
        /// The message's link.
        link: Uuid,
        /// One candidate.
        one: Uuid,
        /// Another.
        two: Uuid,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(next: u128, far_end: u128) -> VirtRoute {
        VirtRoute {
            prev: None,
            next: Some(Uuid::from_u128(next)),
            far_end: Some(Uuid::from_u128(far_end)),
            bandwidth: 0,
            enabled: true,
        }
    }

    #[test]
    fn a_link_named_by_the_other_end_resolves_to_the_one_leading_back_or_is_refused() {
        let (b, a, d) = (Uuid::from_u128(2), Uuid::from_u128(1), Uuid::from_u128(4));
        let (forward, backward, other) =
            (Uuid::from_u128(10), Uuid::from_u128(11), Uuid::from_u128(12));
        let mut routes = Routes::default();
        routes.virt.insert(backward, source(2, 1));
        // Held here: itself.
        assert_eq!(routes.resolve(backward, b, Some(a)).unwrap(), (backward, source(2, 1)));
        // Named by the other end: the link back over the same hop, seen from its far end.
        let (here, route) = routes.resolve(forward, b, Some(a)).unwrap();
        assert_eq!(here, backward);
        assert_eq!((route.prev, route.next), (Some(b), None));
        // From another neighbour, or for another origin: nothing.
        assert!(routes.resolve(forward, d, Some(a)).is_err());
        assert!(routes.resolve(forward, b, Some(d)).is_err());
        // Two links back to the same node over the same hop: ambiguous, refused.
        routes.virt.insert(other, source(2, 1));
        let err = routes.resolve(forward, b, Some(a)).unwrap_err();
        assert!(matches!(err, RouteError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains("both lead back"), "{err}");
    }
}
