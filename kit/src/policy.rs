//! The authorization policy of every qkdn interface, in one table: for each interface, each
//! operation and each kind of identity, whether the call is allowed, allowed under a condition
//! that depends on the request, or refused. Whatever the table does not list is refused.
//!
//! The table is [`RULES`]; [`decide`] reads it; [`markdown`] prints it, and `SECURITY.md`
//! carries exactly that print (a test compares them), so the written policy and the enforced
//! one cannot drift apart. Enforcement is in [`crate::authz`]: an axum layer decides on
//! [`Decision::Allow`] and [`Decision::Deny`] and on the conditions it can judge from the
//! caller alone ([`Condition::ItsController`]); the handlers judge the other conditions, which
//! need the request's content, through the same module.

use crate::identity::Kind;

/// An interface a qkdn service serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// The agent's ETSI GS QKD 015 model over RESTCONF, with its notification stream.
    AgentRestconf,
    /// The agent's KMS figures and link diagnostics (`/api/v1/...` on the RESTCONF listener).
    AgentApi,
    /// The KMS's ETSI GS QKD 014 key delivery.
    Etsi014,
    /// The KMS's SKIP key provider (draft-cisco-skip-02) for encryptors.
    Skip,
    /// The KMS peer service between neighbouring nodes (gRPC).
    Peer,
    /// The controller's REST API (`/api/v1`).
    ControllerApi,
    /// The controller's ETSI GS QKD 018 RESTCONF northbound.
    ControllerRestconf,
    /// The orchestrator's REST API (`/api/v1`).
    OrchestratorApi,
    /// The orchestrator's merged ETSI 018 RESTCONF view.
    OrchestratorRestconf,
}

impl Interface {
    /// Whether the interface hands out key material (never to an unauthenticated caller,
    /// whatever a listener's configuration says).
    pub fn delivers_keys(self) -> bool {
        matches!(self, Interface::Etsi014 | Interface::Skip)
    }

    /// Every interface, in table order.
    pub const ALL: [Interface; 9] = [
        Interface::AgentRestconf,
        Interface::AgentApi,
        Interface::Etsi014,
        Interface::Skip,
        Interface::Peer,
        Interface::ControllerApi,
        Interface::ControllerRestconf,
        Interface::OrchestratorApi,
        Interface::OrchestratorRestconf,
    ];

    /// Its name in logs, metrics and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::AgentRestconf => "agent-restconf",
            Interface::AgentApi => "agent-api",
            Interface::Etsi014 => "etsi014",
            Interface::Skip => "skip",
            Interface::Peer => "kms-peer",
            Interface::ControllerApi => "controller-api",
            Interface::ControllerRestconf => "controller-restconf",
            Interface::OrchestratorApi => "orchestrator-api",
            Interface::OrchestratorRestconf => "orchestrator-restconf",
        }
    }
}

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Reads data, state, figures or an event stream.
    Read,
    /// Creates, changes or deletes configuration or resources.
    Write,
    /// Invokes a RESTCONF operation (the 018 connectivity operations).
    Invoke,
    /// Registers an agent with the controller (`POST /api/v1/nodes`).
    RegisterNode,
    /// Reads one agent's registration (`GET /api/v1/nodes/{id}`, the agents' heartbeat).
    ReadRegistration,
    /// Reads applications (`GET /api/v1/applications[/{id}]`).
    ReadApplications,
    /// Key delivery: ETSI 014 `status`, `enc_keys`, `dec_keys`; SKIP `capabilities`, `key`,
    /// `key/{keyId}`, `entropy`.
    Keys,
    /// Peer `DeviceKeys`: key IDs of an ETSI 014 device's keys, from the master end.
    DeviceKeys,
    /// Peer `ReserveKeys`: the other end of a link reserves delivered keys.
    ReserveKeys,
    /// Peer `RelayKeys`: one hop of a one-time-pad relay.
    RelayKeys,
    /// Peer `CommitRelay`: a relay made usable.
    CommitRelay,
}

impl Operation {
    /// Its name in logs, metrics and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Invoke => "invoke",
            Operation::RegisterNode => "register-node",
            Operation::ReadRegistration => "read-registration",
            Operation::ReadApplications => "read-applications",
            Operation::Keys => "keys",
            Operation::DeviceKeys => "DeviceKeys",
            Operation::ReserveKeys => "ReserveKeys",
            Operation::RelayKeys => "RelayKeys",
            Operation::CommitRelay => "CommitRelay",
        }
    }
}

/// A condition under which a call is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    /// The controller's domain is one the node lists as its controllers (`controller.domains`).
    ItsController,
    /// The node the request names (the registration's `node_id`, the path's id) is the caller;
    /// a registration's RESTCONF and API URLs are `https`.
    SameNode,
    /// Only applications one of whose SAEs is the caller.
    OwnApplications,
    /// Only for SAE pairs the caller belongs to, as the KMS's applications and static pairs
    /// say (ETSI 014: the master is the caller of `enc_keys`, the slave the caller of
    /// `dec_keys`).
    SaePair,
    /// The caller is the node the message's role requires: a relay step and its commit come
    /// from the virtual link's previous hop over the physical link joining them; a reservation
    /// from the other end of the link (or, on a virtual link, from the neighbouring node of
    /// its path forwarding it, for the other end); device keys from the other end of the
    /// physical link. No node named in a message may differ from what the certificate says.
    PeerBinding,
}

impl Condition {
    /// Its name in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::ItsController => "its-controller",
            Condition::SameNode => "same-node",
            Condition::OwnApplications => "own-applications",
            Condition::SaePair => "sae-pair",
            Condition::PeerBinding => "peer-binding",
        }
    }
}

/// What the table says about a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Allowed when the condition holds.
    AllowIf(Condition),
    /// Refused.
    Deny,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The interface.
    pub interface: Interface,
    /// The operation.
    pub operation: Operation,
    /// The identities it is about.
    pub kinds: &'static [Kind],
    /// What they may do.
    pub decision: Decision,
}

const OPERATORS: &[Kind] = &[Kind::Admin, Kind::Viewer];
const ADMIN: &[Kind] = &[Kind::Admin];
const CONTROLLER: &[Kind] = &[Kind::Controller];
const ORCHESTRATOR: &[Kind] = &[Kind::Orchestrator];
const READERS: &[Kind] = &[Kind::Admin, Kind::Viewer, Kind::Orchestrator];
const ADMIN_ORCHESTRATOR: &[Kind] = &[Kind::Admin, Kind::Orchestrator];
const NODE: &[Kind] = &[Kind::Node];
const SAE: &[Kind] = &[Kind::Sae];

const fn rule(
    interface: Interface,
    operation: Operation,
    kinds: &'static [Kind],
    decision: Decision,
) -> Rule {
    Rule { interface, operation, kinds, decision }
}

use Condition::*;
use Decision::{Allow, AllowIf};
use Interface::*;
use Operation::*;

/// The policy. Every (interface, operation, kind) not listed is refused.
pub static RULES: &[Rule] = &[
    // The agent's 015 model: its controllers and admins write; readers read.
    rule(AgentRestconf, Read, READERS, Allow),
    rule(AgentRestconf, Read, CONTROLLER, AllowIf(ItsController)),
    rule(AgentRestconf, Write, ADMIN, Allow),
    rule(AgentRestconf, Write, CONTROLLER, AllowIf(ItsController)),
    // The agent's KMS figures: what its controllers poll; admins may clear relay figures.
    rule(AgentApi, Read, READERS, Allow),
    rule(AgentApi, Read, CONTROLLER, AllowIf(ItsController)),
    rule(AgentApi, Write, ADMIN, Allow),
    // Keys: SAEs only, for their own pairs.
    rule(Etsi014, Keys, SAE, AllowIf(SaePair)),
    rule(Skip, Keys, SAE, AllowIf(SaePair)),
    // The peer service: neighbouring nodes, bound to the role each message claims.
    rule(Peer, DeviceKeys, NODE, AllowIf(PeerBinding)),
    rule(Peer, ReserveKeys, NODE, AllowIf(PeerBinding)),
    rule(Peer, RelayKeys, NODE, AllowIf(PeerBinding)),
    rule(Peer, CommitRelay, NODE, AllowIf(PeerBinding)),
    // The controller's REST API.
    rule(ControllerApi, Read, READERS, Allow),
    rule(ControllerApi, ReadApplications, READERS, Allow),
    rule(ControllerApi, ReadApplications, SAE, AllowIf(OwnApplications)),
    rule(ControllerApi, Write, ADMIN, Allow),
    rule(ControllerApi, RegisterNode, NODE, AllowIf(SameNode)),
    rule(ControllerApi, ReadRegistration, READERS, Allow),
    rule(ControllerApi, ReadRegistration, NODE, AllowIf(SameNode)),
    // The controller's 018 northbound: orchestrators and admins deploy.
    rule(ControllerRestconf, Read, READERS, Allow),
    rule(ControllerRestconf, Invoke, ADMIN_ORCHESTRATOR, Allow),
    // The orchestrator: operators; a parent orchestrator reads the merged view.
    rule(OrchestratorApi, Read, OPERATORS, Allow),
    rule(OrchestratorApi, Write, ADMIN, Allow),
    rule(OrchestratorRestconf, Read, OPERATORS, Allow),
    rule(OrchestratorRestconf, Read, ORCHESTRATOR, Allow),
];

/// Interfaces, operations and kinds there are.
const INTERFACES: usize = Interface::ALL.len();
const OPERATIONS: usize = Operation::CommitRelay as usize + 1;
const KINDS: usize = Kind::ALL.len();

type Table = [[[Decision; KINDS]; OPERATIONS]; INTERFACES];

/// [`RULES`] as an array indexed by interface, operation and kind (built once).
fn table() -> &'static Table {
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [[[Decision::Deny; KINDS]; OPERATIONS]; INTERFACES];
        for rule in RULES {
            for kind in rule.kinds {
                let cell =
                    &mut table[rule.interface as usize][rule.operation as usize][*kind as usize];
                if *cell == Decision::Deny {
                    *cell = rule.decision;
                }
            }
        }
        table
    })
}

/// What the table says about `kind` doing `operation` on `interface`.
pub fn decide(interface: Interface, operation: Operation, kind: Kind) -> Decision {
    table()[interface as usize][operation as usize][kind as usize]
}

/// The operations an interface has, in table order.
pub fn operations(interface: Interface) -> Vec<Operation> {
    let mut ops: Vec<Operation> = Vec::new();
    for r in RULES.iter().filter(|r| r.interface == interface) {
        if !ops.contains(&r.operation) {
            ops.push(r.operation);
        }
    }
    ops
}

/// The table in Markdown: one row per interface and operation, one column per kind of
/// identity; `yes`, `if <condition>` or `-` (refused).
pub fn markdown() -> String {
    let mut out = String::from("| interface | operation |");
    for kind in Kind::ALL {
        out.push_str(&format!(" {} |", kind.as_str()));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(Kind::ALL.len()));
    out.push('\n');
    for interface in Interface::ALL {
        for operation in operations(interface) {
            out.push_str(&format!("| {} | {} |", interface.as_str(), operation.as_str()));
            for kind in Kind::ALL {
                let cell = match decide(interface, operation, kind) {
                    Decision::Allow => "yes".to_owned(),
                    Decision::AllowIf(c) => format!("if {}", c.as_str()),
                    Decision::Deny => "-".to_owned(),
                };
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexed_table_says_what_the_rules_say() {
        for interface in Interface::ALL {
            for operation in operations(interface) {
                for kind in Kind::ALL {
                    let listed = RULES
                        .iter()
                        .find(|r| {
                            r.interface == interface
                                && r.operation == operation
                                && r.kinds.contains(&kind)
                        })
                        .map_or(Decision::Deny, |r| r.decision);
                    assert_eq!(decide(interface, operation, kind), listed);
                }
            }
        }
    }

    #[test]
    fn every_interface_has_rules_and_no_call_is_listed_twice() {
        for interface in Interface::ALL {
            assert!(!operations(interface).is_empty(), "{interface:?}");
        }
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                let overlap = a.kinds.iter().any(|k| b.kinds.contains(k));
                assert!(
                    !(a.interface == b.interface && a.operation == b.operation && overlap),
                    "{a:?} and {b:?} both decide the same call"
                );
            }
        }
    }

    #[test]
    fn what_the_issue_requires_holds() {
        use Kind::*;
        // SAEs and other nodes get nothing of an agent's model.
        for op in [Read, Write] {
            assert_eq!(decide(AgentRestconf, op, Sae), Decision::Deny);
            assert_eq!(decide(AgentRestconf, op, Node), Decision::Deny);
        }
        assert_eq!(decide(AgentRestconf, Write, Viewer), Decision::Deny);
        assert_eq!(decide(AgentRestconf, Write, Orchestrator), Decision::Deny);
        // Keys only for SAEs.
        for kind in [Admin, Viewer, Controller, Orchestrator, Node] {
            assert_eq!(decide(Etsi014, Keys, kind), Decision::Deny);
            assert_eq!(decide(Skip, Keys, kind), Decision::Deny);
        }
        // An SAE cannot change or delete applications.
        assert_eq!(decide(ControllerApi, Write, Sae), Decision::Deny);
        assert_eq!(decide(ControllerApi, Read, Sae), Decision::Deny);
        assert_eq!(decide(ControllerRestconf, Invoke, Viewer), Decision::Deny);
        assert_eq!(decide(OrchestratorApi, Write, Viewer), Decision::Deny);
        // Peers: nodes only.
        for kind in [Admin, Viewer, Controller, Orchestrator, Sae] {
            assert_eq!(decide(Peer, RelayKeys, kind), Decision::Deny);
        }
    }

    #[test]
    fn the_table_prints_one_row_per_operation() {
        let text = markdown();
        let rows = Interface::ALL.iter().map(|i| operations(*i).len()).sum::<usize>();
        assert_eq!(text.lines().count(), rows + 2);
        assert!(text.contains("| etsi014 | keys | - | - | - | - | - | if sae-pair |"), "{text}");
    }
}
