//! `/api/v1/applications`: register (201, or 200 when the same registration is repeated with
//! its id), list, get, change QoS (`PATCH {"qos": {...}}`) and remove.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonBody};
use qkdn_kit::Authorized;
use serde_json::{Value as Json, json};

use super::{ApiState, json_body, uuid_param};
use crate::apps::{self, Application};
use crate::core::Command;
use crate::error::ApiError;

/// An application with the links and nodes it uses.
pub(super) fn describe(app: &Application) -> Json {
    let mut v = serde_json::to_value(app).unwrap_or_default();
    if let Some(obj) = v.as_object_mut()
        && let Some(spec) = obj.remove("spec").and_then(|s| s.as_object().cloned())
    {
        let mut out = spec;
        for (k, val) in std::mem::take(obj) {
            out.insert(k, val);
        }
        *obj = out;
    }
    v
}

/// `?replace=true`: the registration replaces the applications that serve its SAE pairs.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateQuery {
    #[serde(default)]
    replace: bool,
}

pub(super) async fn create(
    State(s): State<ApiState>,
    query: Result<Query<CreateQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("", format!("query: {e}")))?;
    let doc = json_body(&body)?;
    let spec = apps::parse_spec(&doc).map_err(ApiError::Invalid)?;
    if query.replace {
        // An explicit replacement (by an admin: only admins write applications): the
        // applications serving the same SAE pairs are removed first.
        let holders: Vec<uuid::Uuid> = s
            .core
            .view()
            .apps
            .values()
            .filter(|a| {
                a.spec.app_id != spec.app_id
                    && a.spec.server.sae_id == spec.server.sae_id
                    && a.spec
                        .clients
                        .iter()
                        .any(|c| spec.clients.iter().any(|d| d.sae_id == c.sae_id))
            })
            .map(|a| a.spec.app_id)
            .collect();
        for old in holders {
            tracing::info!(%old, new = %spec.app_id, "application replaced by an admin");
            s.core.ask(|r| Command::DeleteApp(old, r)).await?;
        }
    }
    let (app, created) = s.core.ask(|r| Command::CreateApp(spec, r)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("/api/v1/applications/{}", app.spec.app_id);
    Ok((status, [(header::LOCATION, location)], JsonBody(describe(&app))).into_response())
}

/// Whether the caller may see `app`: everyone the gate let read applications, except that an
/// SAE sees only the applications it is an end of.
fn visible(auth: &Authorized, app: &Application) -> bool {
    match auth.identity().and_then(|i| i.sae()) {
        Some(sae) => {
            app.spec.server.sae_id == sae || app.spec.clients.iter().any(|c| c.sae_id == sae)
        }
        None => true,
    }
}

pub(super) async fn list(
    State(s): State<ApiState>,
    Extension(auth): Extension<Authorized>,
) -> JsonBody<Json> {
    let view = s.core.view();
    let apps: Vec<Json> = view.apps.values().filter(|a| visible(&auth, a)).map(describe).collect();
    JsonBody(json!({ "applications": apps }))
}

pub(super) async fn get(
    State(s): State<ApiState>,
    Extension(auth): Extension<Authorized>,
    Path(id): Path<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let id = uuid_param("application", &id)?;
    let view = s.core.view();
    // Another's application is "not found" to an SAE: it does not learn that it exists.
    view.apps
        .get(&id)
        .filter(|a| visible(&auth, a))
        .map(|a| JsonBody(describe(a)))
        .ok_or_else(|| ApiError::NotFound(format!("no application {id}")))
}

pub(super) async fn update(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<JsonBody<Json>, ApiError> {
    let id = uuid_param("application", &id)?;
    let doc = json_body(&body)?;
    let Some(obj) = doc.as_object() else {
        return Err(ApiError::field("", "the body must be a JSON object {\"qos\": {...}}"));
    };
    let mut errors: Vec<apps::FieldError> = obj
        .keys()
        .filter(|k| *k != "qos")
        .map(|k| apps::FieldError {
            pointer: format!("/{k}"),
            detail: "only qos can be changed".into(),
        })
        .collect();
    let view = s.core.view();
    let current =
        view.apps.get(&id).ok_or_else(|| ApiError::NotFound(format!("no application {id}")))?;
    // The changed registration is checked as a whole, so QoS that contradicts the ends is
    // refused with the same pointers as at registration.
    let mut whole = serde_json::to_value(&current.spec).unwrap_or_default();
    whole["qos"] = obj.get("qos").cloned().unwrap_or(Json::Null);
    match apps::parse_spec(&whole) {
        Ok(spec) if errors.is_empty() => {
            let app = s.core.ask(|r| Command::UpdateQos(id, spec.qos, r)).await?;
            Ok(JsonBody(describe(&app)))
        }
        Ok(_) => Err(ApiError::Invalid(errors)),
        Err(mut more) => {
            errors.append(&mut more);
            Err(ApiError::Invalid(errors))
        }
    }
}

pub(super) async fn remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = uuid_param("application", &id)?;
    let clean = s.core.ask(|r| Command::DeleteApp(id, r)).await?;
    Ok(if clean {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            JsonBody(json!({"detail": format!("application {id} removed; some nodes did not answer and are cleaned up when they are back")})),
        )
            .into_response()
    })
}
