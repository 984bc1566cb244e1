//! A consistent, immutable view of a datastore at one moment: the running configuration and the
//! operational state, with their versions.
//!
//! Snapshots are what readers work with: the RESTCONF server renders responses from one, and a
//! commit hook inspects the candidate through one. Taking a snapshot is an atomic pointer load.

use crate::context::YangContext;
use crate::path::DataPath;
use crate::tree::render::{Layers, RenderOptions, render_resource};
use crate::tree::{Inner, Meta, meta_holder};

/// Which data a read includes (RESTCONF `content`, RFC 8040 §4.8.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContentFilter {
    /// Configuration only.
    Config,
    /// State only (with the keys and containers that locate it).
    NonConfig,
    /// Both.
    #[default]
    All,
}

/// Running configuration and operational state at one version.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub(crate) running: Inner,
    pub(crate) state: Inner,
    pub(crate) running_version: u64,
    pub(crate) state_version: u64,
}

/// When a resource last changed, per layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceMeta {
    /// Last configuration change of the resource or a descendant.
    pub config: Option<Meta>,
    /// Last state change of the resource or a descendant.
    pub state: Option<Meta>,
}

impl Snapshot {
    /// An empty datastore.
    pub(crate) fn empty() -> Snapshot {
        Snapshot {
            running: Inner::empty(Meta::now(0)),
            state: Inner::empty(Meta::now(0)),
            running_version: 0,
            state_version: 0,
        }
    }

    /// Version of the running configuration (incremented by every commit that changed it).
    pub fn running_version(&self) -> u64 {
        self.running_version
    }

    /// Version of the operational state.
    pub fn state_version(&self) -> u64 {
        self.state_version
    }

    /// The running configuration tree.
    pub fn running(&self) -> &Inner {
        &self.running
    }

    /// The operational state tree.
    pub fn state(&self) -> &Inner {
        &self.state
    }

    /// The trees a read with `content` walks.
    pub fn layers(&self, content: ContentFilter) -> Layers<'_> {
        match content {
            ContentFilter::Config => Layers { config: Some(&self.running), state: None },
            ContentFilter::NonConfig => Layers { config: None, state: Some(&self.state) },
            ContentFilter::All => Layers { config: Some(&self.running), state: Some(&self.state) },
        }
    }

    /// Renders the resource at `path` as RFC 7951 JSON (`None` when absent).
    pub fn render(
        &self,
        ctx: &YangContext,
        path: &DataPath,
        content: ContentFilter,
        options: &RenderOptions<'_>,
    ) -> Option<String> {
        render_resource(ctx.schema(), self.layers(content), path, options)
    }

    /// The resource at `path` as a JSON value of the form `{"module:name": ...}`.
    pub fn get_json(
        &self,
        ctx: &YangContext,
        path: &DataPath,
        content: ContentFilter,
    ) -> Option<serde_json::Value> {
        let text = self.render(ctx, path, content, &RenderOptions::default())?;
        serde_json::from_str(&text).ok()
    }

    /// Change metadata of the resource at `path`.
    pub fn resource_meta(&self, path: &DataPath) -> ResourceMeta {
        ResourceMeta {
            config: meta_holder(&self.running, path).map(Inner::meta),
            state: meta_holder(&self.state, path).map(Inner::meta),
        }
    }
}
