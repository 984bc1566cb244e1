//! The YANG modules compiled into every qkdn binary.
//!
//! Module texts live in `yang/modules/` and are embedded with `include_str!`, so no YANG file is
//! needed at run time. [`QKDN_MODULES`] lists them in load order (a module comes after the modules
//! it imports); the IETF base modules (`ietf-yang-types`, `ietf-inet-types`, `ietf-yang-library`,
//! `ietf-datastores`) come with libyang itself.

/// One YANG module carried inside the binary.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedModule {
    /// Module name, as in the `module` statement.
    pub name: &'static str,
    /// Newest revision date.
    pub revision: &'static str,
    /// The YANG text.
    pub text: &'static str,
}

/// RFC 6991 `ietf-inet-types`, implemented so that the ETSI modules (written against it) use it
/// rather than libyang's RFC 9911 revision, whose `uri` refuses scheme-less SAE identifiers.
pub const IETF_INET_TYPES_2013: EmbeddedModule = EmbeddedModule {
    name: "ietf-inet-types",
    revision: "2013-07-15",
    text: include_str!("../modules/ietf-inet-types@2013-07-15.yang"),
};

/// ETSI GS QKD 015 identities and types (`etsi-qkd-node-types`).
pub const ETSI_QKD_NODE_TYPES: EmbeddedModule = EmbeddedModule {
    name: "etsi-qkd-node-types",
    revision: "2022-01-30",
    text: include_str!("../modules/etsi-qkd-node-types@2022-01-30.yang"),
};

/// ETSI GS QKD 015 SD-QKD node model (`etsi-qkd-sdn-node`), with the `when` fix documented in
/// the module.
pub const ETSI_QKD_SDN_NODE: EmbeddedModule = EmbeddedModule {
    name: "etsi-qkd-sdn-node",
    revision: "2022-01-30",
    text: include_str!("../modules/etsi-qkd-sdn-node@2022-01-30.yang"),
};

/// RFC 8040 `ietf-restconf`: the yang-data extension, error bodies and the API root.
pub const IETF_RESTCONF: EmbeddedModule = EmbeddedModule {
    name: "ietf-restconf",
    revision: "2017-01-26",
    text: include_str!("../modules/ietf-restconf@2017-01-26.yang"),
};

/// RFC 8040 `ietf-restconf-monitoring`: capabilities and event streams.
pub const IETF_RESTCONF_MONITORING: EmbeddedModule = EmbeddedModule {
    name: "ietf-restconf-monitoring",
    revision: "2017-01-26",
    text: include_str!("../modules/ietf-restconf-monitoring@2017-01-26.yang"),
};

/// ETSI GS QKD 018 topology model: a reconstruction written by qkdn (see the module).
pub const ETSI_QKD_SDN_TOPOLOGY: EmbeddedModule = EmbeddedModule {
    name: "etsi-qkd-sdn-topology",
    revision: "2022-04-01",
    text: include_str!("../modules/etsi-qkd-sdn-topology@2022-04-01.yang"),
};

/// ETSI GS QKD 018 inventory model: a reconstruction written by qkdn (see the module).
pub const ETSI_QKD_SDN_INVENTORY: EmbeddedModule = EmbeddedModule {
    name: "etsi-qkd-sdn-inventory",
    revision: "2022-04-01",
    text: include_str!("../modules/etsi-qkd-sdn-inventory@2022-04-01.yang"),
};

/// ETSI GS QKD 018 connectivity model: a reconstruction written by qkdn (see the module).
pub const ETSI_QKD_SDN_CONNECTIVITY: EmbeddedModule = EmbeddedModule {
    name: "etsi-qkd-sdn-connectivity",
    revision: "2022-04-01",
    text: include_str!("../modules/etsi-qkd-sdn-connectivity@2022-04-01.yang"),
};

/// The modules a node agent implements: the 015 node model and RESTCONF's own, in load order.
pub const NODE_AGENT_MODULES: &[EmbeddedModule] = &[
    IETF_INET_TYPES_2013,
    IETF_RESTCONF,
    IETF_RESTCONF_MONITORING,
    ETSI_QKD_NODE_TYPES,
    ETSI_QKD_SDN_NODE,
];

/// The modules a controller implements on its ETSI 018 northbound: topology,
/// inventory and connectivity, and RESTCONF's own, in load order.
pub const NORTHBOUND_MODULES: &[EmbeddedModule] = &[
    IETF_INET_TYPES_2013,
    IETF_RESTCONF,
    IETF_RESTCONF_MONITORING,
    ETSI_QKD_NODE_TYPES,
    ETSI_QKD_SDN_TOPOLOGY,
    ETSI_QKD_SDN_INVENTORY,
    ETSI_QKD_SDN_CONNECTIVITY,
];

/// The modules of a read-only ETSI 018 network view (an orchestrator's merged network): topology
/// and inventory, without the connectivity operations it does not serve.
pub const NETWORK_VIEW_MODULES: &[EmbeddedModule] = &[
    IETF_INET_TYPES_2013,
    IETF_RESTCONF,
    IETF_RESTCONF_MONITORING,
    ETSI_QKD_NODE_TYPES,
    ETSI_QKD_SDN_TOPOLOGY,
    ETSI_QKD_SDN_INVENTORY,
];

/// Every module qkdn knows, in load order (the CLI's validator and tests use them together; a
/// service implements only its own set, so that its `ietf-yang-library` claims nothing it
/// does not serve).
pub const QKDN_MODULES: &[EmbeddedModule] = &[
    IETF_INET_TYPES_2013,
    IETF_RESTCONF,
    IETF_RESTCONF_MONITORING,
    ETSI_QKD_NODE_TYPES,
    ETSI_QKD_SDN_NODE,
    ETSI_QKD_SDN_TOPOLOGY,
    ETSI_QKD_SDN_INVENTORY,
    ETSI_QKD_SDN_CONNECTIVITY,
];
