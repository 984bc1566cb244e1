//! The libyang context a process works with, and qkdn's schema model built from it.
//!
//! A [`YangContext`] owns one libyang context loaded with the embedded modules (see
//! [`crate::modules`]) and the [`Schema`] model derived from it. It is cheap to clone (shared)
//! and safe to use from many threads: after construction the context is only read, which libyang
//! supports concurrently (each thread keeps its own error record).

use std::sync::{Arc, OnceLock};

use yang5::context::{Context, ContextFlags};
use yang5::schema::{SchemaInputFormat, SchemaModule};

use crate::modules::{
    EmbeddedModule, NETWORK_VIEW_MODULES, NODE_AGENT_MODULES, NORTHBOUND_MODULES, QKDN_MODULES,
};
use crate::schema::{Schema, build};

/// Why a context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// libyang refused to create a context.
    #[error("cannot create a libyang context: {0}")]
    Create(String),
    /// A module did not parse or compile.
    #[error("YANG module {module} does not load: {message}")]
    Module {
        /// Module name (or the first line of its text when unnamed).
        module: String,
        /// libyang's explanation.
        message: String,
    },
}

struct ContextInner {
    ly: Context,
    schema: Schema,
}

/// A loaded libyang context plus its [`Schema`] model.
#[derive(Clone)]
pub struct YangContext {
    inner: Arc<ContextInner>,
}

impl std::fmt::Debug for YangContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YangContext").field("nodes", &self.inner.schema.len()).finish()
    }
}

impl YangContext {
    /// The context with every module qkdn knows, built once per process.
    pub fn qkdn() -> Result<YangContext, ContextError> {
        static QKDN: OnceLock<YangContext> = OnceLock::new();
        Self::cached(&QKDN, QKDN_MODULES)
    }

    /// The context a node agent serves: the 015 node model ([`NODE_AGENT_MODULES`]).
    pub fn node_agent() -> Result<YangContext, ContextError> {
        static AGENT: OnceLock<YangContext> = OnceLock::new();
        Self::cached(&AGENT, NODE_AGENT_MODULES)
    }

    /// The context an ETSI 018 northbound serves ([`NORTHBOUND_MODULES`]).
    pub fn northbound() -> Result<YangContext, ContextError> {
        static NORTHBOUND: OnceLock<YangContext> = OnceLock::new();
        Self::cached(&NORTHBOUND, NORTHBOUND_MODULES)
    }

    /// The context of a read-only 018 network view ([`NETWORK_VIEW_MODULES`]).
    pub fn network_view() -> Result<YangContext, ContextError> {
        static VIEW: OnceLock<YangContext> = OnceLock::new();
        Self::cached(&VIEW, NETWORK_VIEW_MODULES)
    }

    fn cached(
        cell: &OnceLock<YangContext>,
        modules: &[EmbeddedModule],
    ) -> Result<YangContext, ContextError> {
        if let Some(ctx) = cell.get() {
            return Ok(ctx.clone());
        }
        let ctx = YangContext::from_modules(modules, &[])?;
        Ok(cell.get_or_init(|| ctx).clone())
    }

    /// A context with the given embedded modules followed by extra module texts (YANG syntax),
    /// each loaded as implemented, in order.
    pub fn from_modules(
        embedded: &[EmbeddedModule],
        extra: &[&str],
    ) -> Result<YangContext, ContextError> {
        let flags = ContextFlags::DISABLE_SEARCHDIRS | ContextFlags::DISABLE_SEARCHDIR_CWD;
        let ly = Context::new(flags).map_err(|e| ContextError::Create(e.to_string()))?;
        let texts =
            embedded.iter().map(|m| (m.name.to_owned(), m.text)).chain(extra.iter().map(|text| {
                let name = text.lines().next().unwrap_or_default().trim().to_owned();
                (name, *text)
            }));
        for (name, text) in texts {
            if text.contains('\0') {
                return Err(ContextError::Module { module: name, message: "NUL byte".into() });
            }
            SchemaModule::parse_string(&ly, text, SchemaInputFormat::YANG).map_err(|e| {
                ContextError::Module { module: name.clone(), message: e.to_string() }
            })?;
        }
        let schema = build::build(&ly);
        Ok(YangContext { inner: Arc::new(ContextInner { ly, schema }) })
    }

    /// The libyang context.
    pub fn ly(&self) -> &Context {
        &self.inner.ly
    }

    /// The schema model.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }
}
