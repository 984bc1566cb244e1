//! The ETSI 018 connectivity operations: `app-registration`, `create-service-link-id-for-app`,
//! `create-candidate-paths-per-service-link-for-app` and
//! `deploy-a-candidate-path-per-service-link-for-app`, handed to the core. Errors come back as
//! RESTCONF errors with the status of the REST API's equivalent.

use std::collections::HashSet;

use qkdn_yang::etsi015::AppQos;
use qkdn_yang::restconf::RestconfServerBuilder;
use qkdn_yang::{DataError, ErrorTag};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::apps::{self, Qos, virtual_link_id};
use crate::core::{Command, CoreHandle};
use crate::error::ApiError;
use crate::inventory::member;

const MODULE: &str = "etsi-qkd-sdn-connectivity";

fn restconf_error(e: ApiError) -> DataError {
    let status = e.status().as_u16();
    let (tag, message) = match e {
        ApiError::Invalid(errors) => (
            ErrorTag::InvalidValue,
            errors
                .iter()
                .map(|f| format!("{} {}", f.pointer, f.detail))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ApiError::NotFound(m) => (ErrorTag::InvalidValue, m),
        ApiError::Conflict(m) => (ErrorTag::ResourceDenied, m),
        ApiError::Agent(m) => (ErrorTag::OperationFailed, m),
        ApiError::Unauthorized(m) | ApiError::Forbidden(m) => (ErrorTag::AccessDenied, m),
        ApiError::Unavailable(m) => (ErrorTag::ResourceDenied, m),
    };
    DataError::new(tag, message).with_status(status)
}

fn uuid_of(input: &Json, name: &str) -> Option<Uuid> {
    member(input, name).as_str().and_then(|s| Uuid::parse_str(s).ok())
}

fn required_app(input: &Json) -> Result<Uuid, DataError> {
    uuid_of(input, "app_id").ok_or_else(|| DataError::invalid_value("app_id is required"))
}

/// When `svc_link_id` is given it must be the application's.
fn check_service_link(input: &Json, app: Uuid, client: Uuid) -> Result<(), DataError> {
    match uuid_of(input, "svc_link_id") {
        Some(s) if s != virtual_link_id(app, client) => Err(DataError::invalid_value(format!(
            "service link {s} is not the one of application {app} ({})",
            virtual_link_id(app, client)
        ))
        .with_status(404)),
        _ => Ok(()),
    }
}

fn client_node(core: &CoreHandle, app: Uuid) -> Result<Uuid, DataError> {
    core.view()
        .apps
        .get(&app)
        .map(|a| a.spec.clients[0].node)
        .ok_or_else(|| DataError::invalid_value(format!("no application {app}")).with_status(404))
}

/// The registration the REST API would receive for this input.
fn spec_of(input: &Json) -> Json {
    let qos = member(input, "app_qos");
    let server = member(input, "server_app_id");
    let remote = member(input, "remote_qkdn_id");
    let clients: Vec<Json> = member(input, "client_app_id")
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"sae_id": c, "node": remote}))
        .collect();
    let qos = AppQos::read(qos);
    let priority = member(input, "app_priority").as_u64().and_then(|p| u32::try_from(p).ok());
    let q = Qos::from_app_qos(&qos, priority);
    let mut spec = json!({"server": {"sae_id": server, "node": member(input, "local_qkdn_id")}, "clients": clients, "qos": q});
    if let Some(id) = member(input, "app_id").as_str() {
        spec["app_id"] = json!(id);
    }
    spec
}

/// `builder` with the four operations.
pub(super) fn register(
    mut builder: RestconfServerBuilder,
    core: CoreHandle,
) -> RestconfServerBuilder {
    let c = core.clone();
    builder = builder.operation(&format!("{MODULE}:app-registration"), move |input: Json| {
        let core = c.clone();
        async move {
            let spec = apps::parse_spec(&spec_of(&input))
                .map_err(|e| restconf_error(ApiError::Invalid(e)))?;
            let (app, _) =
                core.ask(|r| Command::RegisterApp(spec, r)).await.map_err(restconf_error)?;
            Ok(Some(json!({"app_id": app.spec.app_id.to_string()})))
        }
    });
    let c = core.clone();
    builder = builder.operation(
        &format!("{MODULE}:create-service-link-id-for-app"),
        move |input: Json| {
            let core = c.clone();
            async move {
                let app = required_app(&input)?;
                let client = client_node(&core, app)?;
                Ok(Some(json!({"svc_link_id": virtual_link_id(app, client).to_string()})))
            }
        },
    );
    let c = core.clone();
    builder = builder.operation(
        &format!("{MODULE}:create-candidate-paths-per-service-link-for-app"),
        move |input: Json| {
            let core = c.clone();
            async move {
                let app = required_app(&input)?;
                check_service_link(&input, app, client_node(&core, app)?)?;
                let exclude: HashSet<Uuid> = member(&input, "exclude_qkdn_id")
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                    .collect();
                let max_hops = member(&input, "max_hops").as_u64().map(|h| h as usize);
                let k = member(&input, "max_candidates").as_u64().unwrap_or(3) as usize;
                let found = core
                    .ask(|reply| Command::Candidates { app, exclude, max_hops, k, reply })
                    .await
                    .map_err(restconf_error)?;
                let paths: Vec<Json> = found
                    .iter()
                    .enumerate()
                    .map(|(i, c)| json!({"path_id": i + 1, "phys_link_id": c.links.iter().map(Uuid::to_string).collect::<Vec<_>>()}))
                    .collect();
                Ok(Some(json!({"candidate_path": paths})))
            }
        },
    );
    let c = core.clone();
    builder = builder.operation(
        &format!("{MODULE}:deploy-a-candidate-path-per-service-link-for-app"),
        move |input: Json| {
            let core = c.clone();
            async move {
                let app = required_app(&input)?;
                check_service_link(&input, app, client_node(&core, app)?)?;
                let path = member(&input, "path_id").as_u64().unwrap_or(0) as usize;
                let deployed =
                    core.ask(|r| Command::Deploy(app, path, r)).await.map_err(restconf_error)?;
                let leg = &deployed.legs[0];
                Ok(Some(json!({
                    "svc_link_id": virtual_link_id(app, leg.client_node).to_string(),
                    "phys_link_id": leg.links.iter().map(Uuid::to_string).collect::<Vec<_>>(),
                })))
            }
        },
    );
    let c = core.clone();
    builder = builder.operation(&format!("{MODULE}:deploy-segment"), move |input: Json| {
        let core = c.clone();
        async move {
            let spec = apps::parse_spec(&spec_of(&input))
                .map_err(|e| restconf_error(ApiError::Invalid(e)))?;
            let link = uuid_of(&input, "svc_link_id")
                .ok_or_else(|| DataError::invalid_value("svc_link_id is required"))?;
            let nodes: Vec<Uuid> = member(&input, "path_qkdn_id")
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                .collect();
            let segment = crate::apps::Segment {
                upstream: uuid_of(&input, "upstream_qkdn_id"),
                downstream: uuid_of(&input, "downstream_qkdn_id"),
            };
            let (app, _) = core
                .ask(|reply| Command::DeploySegment { spec, link, nodes, segment, reply })
                .await
                .map_err(restconf_error)?;
            let links = app
                .legs
                .first()
                .map(|l| l.links.iter().map(Uuid::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            Ok(Some(json!({"phys_link_id": links})))
        }
    });
    let c = core;
    builder = builder.operation(&format!("{MODULE}:remove-app"), move |input: Json| {
        let core = c.clone();
        async move {
            let app = required_app(&input)?;
            core.ask(|r| Command::DeleteApp(app, r)).await.map_err(restconf_error)?;
            Ok(None)
        }
    });
    builder
}
