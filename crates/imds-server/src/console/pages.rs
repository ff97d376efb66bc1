//! The console's pages and the form handlers behind them. Each change turns its form into the
//! control API's model type (through serde, as a JSON body would be read) and calls the control
//! API's handler with it.
//!
//! A helper that fails returns the page to answer with (a `Response`), which is sent at once.
#![allow(
    clippy::result_large_err,
    reason = "an error is the page answered at once, made at most once a request"
)]

use std::collections::HashMap;

use axum::{
    extract::{FromRequest, Path, Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Form,
};
use imds_credentials::{CredentialRequest, Delivery};
use maud::{html, Markup, DOCTYPE};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    api_error, check_token, cookie, forbidden, multipart, session_id, ConsoleState, LoggedIn,
};
use crate::admin_api::{
    events, faults, instances,
    model::{
        EventList, FaultKind, FaultList, HostQuery, Instance, InstancePatch, MaintenanceCode,
        RoleList, Scenario, ScenarioList, ScenarioRun, ScenarioState, SpotAction, StepProgress,
    },
    options, roles, scenarios, ApiError, Body, PathParams,
};

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// `GET /ui/assets/console.js`.
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// `GET /ui/assets/console.css`.
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// A page's frame: head, navigation (with logout when logged in) and `body`.
fn frame(title: &str, who: Option<&LoggedIn>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · imds console" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header {
                    strong { "imds" }
                    @if let Some(who) = who {
                        nav {
                            a href="/ui/instances" { "Instances" }
                            a href="/ui/roles" { "Roles" }
                            a href="/ui/scenarios" { "Scenarios" }
                            a href="/ui/credentials" { "Credential use" }
                        }
                        span.access {
                            @if who.session.access.can_change { "can change" } @else { "read only" }
                        }
                        form method="post" action="/ui/logout" {
                            (csrf_field(who))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page that says `message`.
pub fn message_page(title: &str, message: &str) -> Markup {
    frame(
        title,
        None,
        html! { p.error role="alert" { (message) } p { a href="/ui/instances" { "Back to the console" } } },
    )
}

fn csrf_field(who: &LoggedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.session.csrf); }
}

/// A form that changes something; its button is disabled for a read-only session.
fn change_form(who: &LoggedIn, action: &str, fields: Markup, button: &str) -> Markup {
    html! {
        form.change method="post" action=(action) {
            (csrf_field(who))
            (fields)
            button type="submit" disabled[!who.session.access.can_change] { (button) }
        }
    }
}

/// A `change_form` that can carry a file (`multipart/form-data`).
fn upload_form(who: &LoggedIn, action: &str, fields: Markup, button: &str) -> Markup {
    html! {
        form.change method="post" action=(action) enctype="multipart/form-data" {
            (csrf_field(who))
            (fields)
            button type="submit" disabled[!who.session.access.can_change] { (button) }
        }
    }
}

/// The form fields of a change, after its session and CSRF token were checked.
pub struct Change {
    fields: HashMap<String, String>,
}

impl FromRequest<ConsoleState> for Change {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let who = <LoggedIn as axum::extract::FromRequestParts<ConsoleState>>::from_request_parts(
            &mut parts, state,
        )
        .await?;
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let request = Request::from_parts(parts, body);
        let fields = if multipart::is_multipart(&content_type) {
            // A form with a file field (the body limit is the router's default, 2 MiB).
            multipart::fields(request, state).await
        } else {
            Form::<HashMap<String, String>>::from_request(request, state)
                .await
                .ok()
                .map(|Form(fields)| fields)
        };
        let Some(fields) = fields else {
            return Err(forbidden("send the console's form"));
        };
        who.may_change(fields.get("csrf").map_or("", String::as_str))?;
        Ok(Change { fields })
    }
}

impl Change {
    /// A field's value, `None` when absent or blank.
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }
}

/// Reads `fields` (pairs of a model key and a form value) into the control API's type `T`,
/// as its JSON body would be read; numbers are sent as numbers.
fn model<T: DeserializeOwned>(fields: &[(&str, Option<&str>)]) -> Result<T, Response> {
    let mut object = Map::new();
    for (key, value) in fields {
        if let Some(value) = value {
            let value = match value.parse::<u64>() {
                Ok(number) if !key.ends_with("Id") && *key != "Path" && *key != "State" => {
                    Value::from(number)
                }
                _ => Value::from(*value),
            };
            object.insert((*key).to_owned(), value);
        }
    }
    serde_json::from_value(Value::Object(object)).map_err(|error| {
        (
            StatusCode::BAD_REQUEST,
            message_page("Not done", &format!("the form: {error}")),
        )
            .into_response()
    })
}

/// A JSON text field read as `T`; a 400 page naming the field otherwise.
fn json_field<T: DeserializeOwned>(name: &str, text: Option<&str>) -> Result<T, Response> {
    serde_json::from_str(text.unwrap_or("{}")).map_err(|error| {
        (
            StatusCode::BAD_REQUEST,
            message_page("Not done", &format!("{name}: not valid JSON here: {error}")),
        )
            .into_response()
    })
}

/// The control API's answer as `T`, or its error as a page.
async fn answer<T: DeserializeOwned>(result: Result<Response, ApiError>) -> Result<T, Response> {
    let response = result.map_err(|error| api_error(&error))?;
    let failed = || {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            message_page("Not done", "the control API's answer could not be read"),
        )
            .into_response()
    };
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .map_err(|_| failed())?;
    serde_json::from_slice(&bytes).map_err(|_| failed())
}

fn done<T>(result: Result<T, ApiError>, to: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(to).into_response(),
        Err(error) => api_error(&error),
    }
}

/// What a path segment keeps unencoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

fn instance_url(instance_id: &str) -> String {
    format!(
        "/ui/instances/{}",
        percent_encoding::utf8_percent_encode(instance_id, SEGMENT)
    )
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

#[derive(serde::Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    failed: Option<String>,
}

/// `GET /ui/login`.
pub async fn login_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    if session_id(&headers).is_some_and(|id| state.sessions.get(&id).is_some()) {
        return Redirect::to("/ui/instances").into_response();
    }
    let failed = query.failed.is_some();
    login_form(failed).into_response()
}

fn login_form(failed: bool) -> Markup {
    frame(
        "Log in",
        None,
        html! {
            @if failed { p.error role="alert" { "That is not a control-API token." } }
            p { "Paste the control-API token: the file given to " code { "imds serve --admin-token-file" }
                ", or " code { "admin-token" } " in the state directory when none was given." }
            form method="post" action="/ui/login" autocomplete="off" {
                label { "Token " input type="password" name="token" required autofocus; }
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `POST /ui/login`: a session for a control-API token.
pub async fn login(State(state): State<ConsoleState>, Form(form): Form<LoginForm>) -> Response {
    let Some(access) = check_token(&state.tokens, &form.token) else {
        tracing::info!(message = "Console login refused: not a control-API token.");
        return (StatusCode::UNAUTHORIZED, login_form(true)).into_response();
    };
    let (id, _) = state.sessions.open(access, &state.options);
    tracing::info!(message = "Console login.", can_change = access.can_change);
    let mut response = Redirect::to("/ui/instances").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(Some(&id), &state.options));
    response
}

/// `POST /ui/logout`: ends the session (a CSRF token is needed, not the right to change).
pub async fn logout(
    State(state): State<ConsoleState>,
    who: LoggedIn,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let presented = fields.get("csrf").map_or("", String::as_str);
    if !super::same_secret(&who.session.csrf, presented) {
        return forbidden("the form's CSRF token is missing or wrong");
    }
    state.sessions.close(&who.id);
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(None, &state.options));
    response
}

fn options_cell(instance: &Instance) -> Markup {
    let options = &instance.metadata_options;
    html! {
        "HttpTokens " b { (options.http_tokens.to_string()) } ", hop limit "
        (options.http_put_response_hop_limit.get()) ", endpoint "
        (options.http_endpoint.to_string()) ", tags "
        (options.instance_metadata_tags.to_string())
        " (" (options.state.as_str()) ")"
    }
}

/// `GET /ui/instances`.
pub async fn instances(State(state): State<ConsoleState>, who: LoggedIn) -> Response {
    let list: Result<crate::admin_api::model::InstanceList, Response> =
        answer(instances::list(State(state.admin.clone())).await).await;
    let list = match list {
        Ok(list) => list,
        Err(response) => return response,
    };
    let fleet = state.admin.registry.host_id().is_some();
    let body = html! {
        table id="instances" {
            thead { tr {
                th { "Instance" } th { "Type, zone" } th { "Addresses" } th { "Role" }
                th { "Metadata options" } th { "Tokenless (refused)" }
                @if fleet { th { "Host" } }
            } }
            tbody {
                @for instance in &list.instances {
                    tr data-instance=(instance.instance_id) {
                        td { a href=(instance_url(&instance.instance_id)) { (instance.instance_id) } }
                        td { (instance.instance_type) ", " (instance.availability_zone) }
                        td { (instance.addresses.join(", ")) }
                        td { (instance.iam_role.as_deref().unwrap_or("-")) }
                        td { (options_cell(instance)) }
                        td { (instance.metadata_no_token) " (" (instance.metadata_no_token_rejected) ")" }
                        @if fleet { td { (instance.host_id.as_deref().unwrap_or("-")) } }
                    }
                }
            }
        }
        h2 { "Requests, all instances" }
        (charts(false))
        h2 { "Register an instance" }
        (change_form(&who, "/ui/instances", html! {
            label { "Description (JSON, the config file's [instance] keys; addresses is required)"
                textarea name="description" rows="6" cols="70" placeholder=r#"{"addresses": ["127.0.0.2"], "iam": {"role-name": "app"}}"# {} }
            @if fleet { label { "Host " input name="host-id"; } }
        }, "Register"))
    };
    frame("Instances", Some(&who), body).into_response()
}

/// The live charts, filled by `console.js` from `/ui/live`: of every instance, or (on an
/// instance's page) of that one.
fn charts(one_instance: bool) -> Markup {
    let whose = if one_instance {
        "this instance"
    } else {
        "all instances"
    };
    html! {
        div.charts data-scope=(if one_instance { "instance" } else { "all" }) {
            figure { figcaption { "Requests by route, " (whose) ": IMDSv1 and IMDSv2" } canvas id="routes" width="640" height="240" {} }
            figure { figcaption { "Refusals per second, " (whose) } canvas id="refusals" width="640" height="240" {} }
        }
        p.totals {
            "v1 " span data-stat="v1" { "0" } " · v2 " span data-stat="v2" { "0" }
            " (v1 share " span data-stat="v1-share" { "-" } ")"
            " · 401 " span data-stat="401" { "0" } " · 403 " span data-stat="403" { "0" }
            " · 429 " span data-stat="429" { "0" }
            @if !one_instance { " · lockdown " span data-stat="lockdown" { "0" } }
        }
        details {
            summary { "Requests by route (table)" }
            table id="by-route" {
                thead { tr { th { "Route" } th { "IMDSv1" } th { "IMDSv2" } } }
                tbody {}
            }
        }
    }
}

/// `POST /ui/instances`: register.
pub async fn register(State(state): State<ConsoleState>, change: Change) -> Response {
    let spec = match json_field("description", change.get("description")) {
        Ok(spec) => spec,
        Err(response) => return response,
    };
    let placement = Ok(Query(HostQuery {
        host_id: change.get("host-id").map(str::to_owned),
    }));
    let registered: Result<Instance, Response> =
        answer(instances::register(State(state.admin.clone()), placement, Body(spec)).await).await;
    match registered {
        Ok(instance) => Redirect::to(&instance_url(&instance.instance_id)).into_response(),
        Err(response) => response,
    }
}

fn select(name: &str, values: &[&str], current: &str) -> Markup {
    html! {
        select name=(name) {
            @for value in values {
                option value=(value) selected[*value == current] { (value) }
            }
        }
    }
}

/// `GET /ui/instances/{instance_id}`.
pub async fn instance(
    State(state): State<ConsoleState>,
    who: LoggedIn,
    Path(instance_id): Path<String>,
) -> Response {
    let admin = state.admin.clone();
    let instance: Instance = match answer(
        instances::describe(State(admin.clone()), PathParams(instance_id.clone())).await,
    )
    .await
    {
        Ok(instance) => instance,
        Err(response) => return response,
    };
    let events: EventList =
        match answer(events::list(State(admin.clone()), PathParams(instance_id.clone())).await)
            .await
        {
            Ok(events) => events,
            Err(response) => return response,
        };
    let faults: FaultList =
        match answer(faults::list(State(admin.clone()), PathParams(instance_id.clone())).await)
            .await
        {
            Ok(faults) => faults,
            Err(response) => return response,
        };
    let url = instance_url(&instance.instance_id);
    let options = &instance.metadata_options;
    let description =
        serde_json::to_string_pretty(&instance.description).unwrap_or_else(|_| "{}".to_owned());
    let spot_actions: Vec<&str> = SpotAction::ALL
        .iter()
        .map(|action| action.as_str())
        .collect();
    let codes: Vec<&str> = MaintenanceCode::ALL
        .iter()
        .map(|code| code.as_str())
        .collect();
    let kinds: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.as_str()).collect();
    let body = html! {
        dl.identity data-instance=(instance.instance_id) {
            dt { "Type, zone" } dd { (instance.instance_type) ", " (instance.availability_zone) " (" (instance.region) ")" }
            dt { "Addresses" } dd { (instance.addresses.join(", ")) }
            dt { "Role" } dd { (instance.iam_role.as_deref().unwrap_or("-")) }
            @if let Some(host) = &instance.host_id { dt { "Host" } dd { (host) } }
            dt { "Metadata options" } dd id="options" { (options_cell(&instance)) }
            dt { "Tokenless requests" } dd { span data-stat="no-token" { (instance.metadata_no_token) } " served, "
                span data-stat="no-token-rejected" { (instance.metadata_no_token_rejected) } " refused" }
        }
        h2 { "Requests" }
        (charts(true))
        h2 { "Metadata options" }
        (change_form(&who, &format!("{url}/options"), html! {
            label { "HttpTokens " (select("HttpTokens", &["optional", "required"], &options.http_tokens.to_string())) }
            label { "Hop limit " input type="number" name="HttpPutResponseHopLimit" min="1" max="64" value=(options.http_put_response_hop_limit.get()); }
            label { "Endpoint " (select("HttpEndpoint", &["enabled", "disabled"], &options.http_endpoint.to_string())) }
            label { "IPv6 " (select("HttpProtocolIpv6", &["enabled", "disabled"], &options.http_protocol_ipv6.to_string())) }
            label { "Tags " (select("InstanceMetadataTags", &["enabled", "disabled"], &options.instance_metadata_tags.to_string())) }
        }, "Change options"))
        h2 { "Events" }
        table id="events" {
            thead { tr { th { "Event" } th { "Type" } th { "Status" } th { "Posted" } th { "Details" } th {} } }
            tbody {
                @for event in &events.events {
                    tr {
                        td { (event.event_id) }
                        td { (serde_json::to_value(event.r#type).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                        td { (event.status.as_str()) }
                        td { (event.posted_time) }
                        td { code { (serde_json::to_string(&event.details).unwrap_or_default()) } }
                        td {
                            @let base = format!("{url}/events/{}", percent_encoding::utf8_percent_encode(&event.event_id, SEGMENT));
                            (change_form(&who, &format!("{base}/cancel"), html! {}, "Cancel"))
                            @if event.event_id.starts_with("instance-event-") {
                                (change_form(&who, &format!("{base}/complete"), html! {}, "Complete"))
                            }
                        }
                    }
                }
            }
        }
        div.events {
            (change_form(&who, &format!("{url}/events"), html! {
                input type="hidden" name="Type" value="spot-interruption";
                label { "Action " (select("Action", &spot_actions, "terminate")) }
                label { "In " input name="In" size="5" placeholder="now"; }
            }, "Spot interruption"))
            (change_form(&who, &format!("{url}/events"), html! {
                input type="hidden" name="Type" value="rebalance-recommendation";
            }, "Rebalance recommendation"))
            (change_form(&who, &format!("{url}/events"), html! {
                input type="hidden" name="Type" value="scheduled-maintenance";
                label { "Code " (select("Code", &codes, "system-reboot")) }
            }, "Maintenance"))
            (change_form(&who, &format!("{url}/events"), html! {
                input type="hidden" name="Type" value="target-lifecycle-state";
                label { "State " (select("State", &["InService", "Standby", "Warmed:Hibernated", "Warmed:Running", "Warmed:Stopped", "Terminated"], "Terminated")) }
            }, "ASG lifecycle state"))
        }
        h2 { "Faults" }
        table id="faults" {
            thead { tr { th { "Fault" } th { "Kind" } th { "Path" } th { "State" } th { "Matched" } th { "Changed" } } }
            tbody {
                @for fault in &faults.faults {
                    tr {
                        td { (fault.fault_id) }
                        td { (fault.description.kind.as_str()) }
                        td { (fault.description.path.as_deref().unwrap_or("**")) }
                        td { (fault.state.as_str()) }
                        td.matched { (fault.matched) }
                        td { (fault.injected) }
                    }
                }
            }
        }
        (change_form(&who, &format!("{url}/faults"), html! {
            label { "Kind " (select("Kind", &kinds, "status")) }
            label { "Path " input name="Path" placeholder="meta-data/**"; }
            label { "Status " input type="number" name="Status" min="100" max="599" placeholder="500"; }
            label { "Latency ms " input type="number" name="LatencyMs" min="0"; }
            label { "Count " input type="number" name="Count" min="1"; }
            label { "Duration " input name="Duration" size="5" placeholder="5m"; }
        }, "Inject fault"))
        (change_form(&who, &format!("{url}/faults/clear"), html! {}, "Clear faults"))
        h2 { "Description" }
        (change_form(&who, &format!("{url}/description"), html! {
            label { "A JSON merge patch of the description (null removes a key)"
                textarea name="patch" rows="12" cols="70" { (description) } }
        }, "Change description"))
        h2 { "Deregister" }
        (change_form(&who, &format!("{url}/deregister"), html! {}, "Deregister"))
    };
    frame(&instance.instance_id, Some(&who), body).into_response()
}

/// `POST /ui/instances/{instance_id}/options`.
pub async fn modify_options(
    State(state): State<ConsoleState>,
    Path(instance_id): Path<String>,
    change: Change,
) -> Response {
    let request = match model(&[
        ("HttpTokens", change.get("HttpTokens")),
        (
            "HttpPutResponseHopLimit",
            change.get("HttpPutResponseHopLimit"),
        ),
        ("HttpEndpoint", change.get("HttpEndpoint")),
        ("HttpProtocolIpv6", change.get("HttpProtocolIpv6")),
        ("InstanceMetadataTags", change.get("InstanceMetadataTags")),
    ]) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let result = options::modify(
        State(state.admin.clone()),
        PathParams(instance_id.clone()),
        Body(request),
    )
    .await;
    done(result, &instance_url(&instance_id))
}

/// `POST /ui/instances/{instance_id}/description`: a merge patch.
pub async fn update_description(
    State(state): State<ConsoleState>,
    Path(instance_id): Path<String>,
    change: Change,
) -> Response {
    let patch: Value = match json_field("patch", change.get("patch")) {
        Ok(patch) => patch,
        Err(response) => return response,
    };
    let result = instances::update(
        State(state.admin.clone()),
        PathParams(instance_id.clone()),
        Ok(Query(HostQuery::default())),
        Body(InstancePatch(patch)),
    )
    .await;
    done(result, &instance_url(&instance_id))
}

/// `POST /ui/instances/{instance_id}/deregister`.
pub async fn deregister(
    State(state): State<ConsoleState>,
    Path(instance_id): Path<String>,
    _checked: Change,
) -> Response {
    let result = instances::deregister(State(state.admin.clone()), PathParams(instance_id)).await;
    done(result, "/ui/instances")
}

/// `POST /ui/instances/{instance_id}/events`.
pub async fn post_event(
    State(state): State<ConsoleState>,
    Path(instance_id): Path<String>,
    change: Change,
) -> Response {
    let request = match model(&[
        ("Type", change.get("Type")),
        ("Action", change.get("Action")),
        ("In", change.get("In")),
        ("Code", change.get("Code")),
        ("State", change.get("State")),
    ]) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let result = events::post(
        State(state.admin.clone()),
        PathParams(instance_id.clone()),
        Body(request),
    )
    .await;
    done(result, &instance_url(&instance_id))
}

/// `POST /ui/instances/{instance_id}/events/{event_id}/cancel` and `.../complete`.
pub async fn end_event(
    State(state): State<ConsoleState>,
    Path((instance_id, event_id, ending)): Path<(String, String, String)>,
    _checked: Change,
) -> Response {
    let admin = State(state.admin.clone());
    let ids = PathParams((instance_id.clone(), event_id));
    let result = match ending.as_str() {
        "cancel" => events::cancel(admin, ids).await,
        "complete" => events::complete(admin, ids).await,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                message_page("Not found", "no such page"),
            )
                .into_response()
        }
    };
    done(result, &instance_url(&instance_id))
}

/// `POST /ui/instances/{instance_id}/faults`.
pub async fn inject_fault(
    State(state): State<ConsoleState>,
    Path(instance_id): Path<String>,
    change: Change,
) -> Response {
    let request = match model(&[
        ("Kind", change.get("Kind")),
        ("Path", change.get("Path")),
        ("Status", change.get("Status")),
        ("LatencyMs", change.get("LatencyMs")),
        ("Count", change.get("Count")),
        ("Duration", change.get("Duration")),
    ]) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let result = faults::inject(
        State(state.admin.clone()),
        PathParams(instance_id.clone()),
        Body(request),
    )
    .await;
    done(result, &instance_url(&instance_id))
}

/// `POST /ui/instances/{instance_id}/faults/clear`.
pub async fn clear_faults(
    State(state): State<ConsoleState>,
    Path(instance_id): Path<String>,
    _checked: Change,
) -> Response {
    let result = faults::clear(State(state.admin.clone()), PathParams(instance_id.clone())).await;
    done(result, &instance_url(&instance_id))
}

/// `GET /ui/roles`: each role's provider and, per instance, the key id served now and when
/// the next set is due.
#[allow(
    clippy::disallowed_methods,
    reason = "the page shows which credentials are current when it is asked for"
)]
pub async fn roles(State(state): State<ConsoleState>, who: LoggedIn) -> Response {
    let list: RoleList = match answer(roles::list(State(state.admin.clone())).await).await {
        Ok(list) => list,
        Err(response) => return response,
    };
    let served: crate::admin_api::model::InstanceList =
        match answer(instances::list(State(state.admin.clone())).await).await {
            Ok(list) => list,
            Err(response) => return response,
        };
    // Every role in use or with a provider of its own.
    let mut rows: std::collections::BTreeMap<String, RoleRow> = list
        .roles
        .into_iter()
        .map(|role| {
            (
                role.role_name,
                RoleRow {
                    provider: role.provider,
                    revision: role.revision.to_string(),
                    description: Some(role.description),
                    instance_ids: role.instance_ids,
                },
            )
        })
        .collect();
    for instance in served.instances {
        if let Some(role) = instance.iam_role {
            let row = rows.entry(role).or_insert_with(|| RoleRow {
                provider: "default".to_owned(),
                revision: "-".to_owned(),
                description: None,
                instance_ids: Vec::new(),
            });
            if !row.instance_ids.contains(&instance.instance_id) {
                row.instance_ids.push(instance.instance_id);
            }
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let cache = state.admin.registry.role_cache();
    let body = html! {
        p { "Each role in use or with a provider of its own (the others use the default provider), "
            "with the key id each instance is served now." }
        table id="roles" {
            thead { tr { th { "Role" } th { "Provider" } th { "Revision" } th { "Description" } th { "Instance" } th { "Key id (IMDSv2)" } th { "Next refresh" } th {} } }
            tbody {
                @for (role_name, row) in &rows {
                    @let description = row.description.as_ref().map_or_else(|| "-".to_owned(), |spec| serde_json::to_string(&spec.without_secrets()).unwrap_or_default());
                    @let remove = html! {
                        @if row.description.is_some() {
                            (change_form(&who, &format!("/ui/roles/{}/delete", percent_encoding::utf8_percent_encode(role_name, SEGMENT)), html! {}, "Delete"))
                        }
                    };
                    @if row.instance_ids.is_empty() {
                        tr data-role=(role_name) { td { (role_name) } td { (row.provider) } td { (row.revision) } td { code { (description) } } td { "-" } td { "-" } td { "-" } td { (remove) } }
                    }
                    @for (index, instance_id) in row.instance_ids.iter().enumerate() {
                        @let current = cache.peek(CredentialRequest { role_name, instance_id, delivery: Delivery::V2 }, now);
                        tr data-role=(role_name) {
                            td { (role_name) } td { (row.provider) } td { (row.revision) }
                            td { code { (description) } }
                            td { (instance_id) }
                            td { (current.as_ref().map_or("-", |set| set.access_key_id.as_str())) }
                            td { (current.as_ref().map_or_else(|| "-".to_owned(), |set| imds_core::render::aws_timestamp(set.refresh_at))) }
                            td { @if index == 0 { (remove) } }
                        }
                    }
                }
            }
        }
        h2 { "Set a role's provider" }
        p { "As " code { "imds ctl put-role" } " does: a role given again gets the new provider, "
            "and its instances new credentials, before the answer. A static role's keys come only from a "
            "credentials file (JSON with AccessKeyId, SecretAccessKey and Token or SessionToken, as IMDS or "
            code { "aws sts assume-role" } " print them); the secret is never shown." }
        (upload_form(&who, "/ui/roles", html! {
            label { "Role " input name="RoleName" required; }
            label { "Provider " (select("provider", &["generated", "static", "sts"], "generated")) }
            label { "Lifetime seconds " input type="number" name="lifetime-seconds" min="6" max="43200" placeholder="server default"; }
            label { "Credentials file (static) " input type="file" name="credentials-file" accept=".json,application/json"; }
            fieldset {
                legend { "sts" }
                label { "Role ARN " input name="role-arn" size="40"; }
                label { "Region " input name="region" size="12"; }
                label { "Endpoint URL " input name="endpoint-url" size="30"; }
                label { "External id " input name="external-id"; }
                label { "Duration seconds " input type="number" name="duration-seconds" min="1" max="43200"; }
                label { "Session tags (KEY=VALUE, one a line) " textarea name="session-tags" rows="2" cols="30" {} }
                label { "Session policy (JSON) " textarea name="policy" rows="2" cols="40" {} }
            }
        }, "Set provider"))
    };
    frame("Roles", Some(&who), body).into_response()
}

/// A role's row on the roles page.
struct RoleRow {
    provider: String,
    revision: String,
    /// The description when the role has a provider of its own.
    description: Option<imds_credentials::spec::RoleSpec>,
    instance_ids: Vec<String>,
}

fn bad_form(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message_page("Not done", message)).into_response()
}

/// The `[[roles]]` entry a role form describes, as the control API's `PUT /v1/roles/{name}`
/// reads its body (through serde); a static role's keys from the uploaded credentials file.
fn role_spec(change: &Change) -> Result<imds_credentials::spec::RoleSpec, Response> {
    let mut object = Map::new();
    for key in [
        "provider",
        "role-arn",
        "region",
        "endpoint-url",
        "external-id",
        "policy",
    ] {
        if let Some(value) = change.get(key) {
            object.insert(key.to_owned(), Value::from(value));
        }
    }
    for key in ["lifetime-seconds", "duration-seconds"] {
        if let Some(value) = change.get(key) {
            let value = value
                .parse::<i64>()
                .map_or_else(|_| Value::from(value), Value::from);
            object.insert(key.to_owned(), value);
        }
    }
    if let Some(tags) = change.get("session-tags") {
        let mut map = Map::new();
        for line in tags.lines().map(str::trim).filter(|line| !line.is_empty()) {
            match line.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    map.insert(key.trim().to_owned(), Value::from(value.trim()));
                }
                _ => {
                    return Err(bad_form(&format!(
                        "session tags: {line:?} is not KEY=VALUE"
                    )))
                }
            }
        }
        object.insert("session-tags".to_owned(), Value::Object(map));
    }
    let mut spec: imds_credentials::spec::RoleSpec = serde_json::from_value(Value::Object(object))
        .map_err(|error| bad_form(&format!("the form: {error}")))?;
    if let Some(text) = change.get("credentials-file") {
        crate::wire::fill_static_keys(&mut spec, text)
            .map_err(|error| bad_form(&format!("the credentials file {error}")))?;
    }
    Ok(spec)
}

/// `POST /ui/roles`: sets a role's provider (`PUT /v1/roles/{name}`).
pub async fn put_role(State(state): State<ConsoleState>, change: Change) -> Response {
    let Some(role_name) = change.get("RoleName").map(str::to_owned) else {
        return bad_form("give the role's name");
    };
    let spec = match role_spec(&change) {
        Ok(spec) => spec,
        Err(response) => return response,
    };
    let result = roles::put(
        State(state.admin.clone()),
        PathParams(role_name),
        Body(spec),
    )
    .await;
    done(result, "/ui/roles")
}

/// `POST /ui/roles/{role_name}/delete`: the role uses the default provider again.
pub async fn delete_role(
    State(state): State<ConsoleState>,
    Path(role_name): Path<String>,
    _checked: Change,
) -> Response {
    let result = roles::delete(State(state.admin.clone()), PathParams(role_name)).await;
    done(result, "/ui/roles")
}

/// A scenario to paste or upload on the scenarios page.
const SCENARIO_EXAMPLE: &str = r#"{"name": "credentials outage", "steps": [
  {"at": "0s", "until": "20s", "inject-fault": {"Kind": "status", "Status": 500, "Path": "meta-data/iam/security-credentials/*"}},
  {"at": "30s", "post-event": {"Type": "spot-interruption", "Action": "terminate"}}
]}"#;

/// `ms` as seconds, `12.5 s`.
fn seconds(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

/// A step's answer or error, as one line of JSON.
fn step_result(step: &StepProgress) -> String {
    match (&step.answer, &step.error) {
        (_, Some(error)) => format!("{}: {}", error.code.as_str(), error.message),
        (Some(answer), None) => serde_json::to_string(answer).unwrap_or_default(),
        (None, None) => String::new(),
    }
}

fn scenario_section(who: &LoggedIn, run: &ScenarioRun) -> Markup {
    let url = format!(
        "/ui/scenarios/{}",
        percent_encoding::utf8_percent_encode(&run.scenario_id, SEGMENT)
    );
    html! {
        section.scenario data-scenario=(run.scenario_id) {
            h2 { (run.name) " " small { (run.scenario_id) } }
            p {
                "State " b data-field="state" { (run.state.as_str()) }
                ", started " (run.started_at)
                ", ended " span data-field="ended" { (run.ended_at.as_deref().unwrap_or("-")) }
            }
            table.steps {
                thead { tr { th { "#" } th { "At" } th { "Action" } th { "Instance" } th { "State" } th { "Ended" } th { "Answer or error" } } }
                tbody {
                    @for step in &run.steps {
                        tr data-step=(step.index) data-state=(step.state.as_str()) {
                            td { (step.index) }
                            td { (seconds(step.at_ms)) }
                            td { (step.action) }
                            td { (step.instance_id.as_deref().unwrap_or("-")) }
                            td data-field="state" { (step.state.as_str()) }
                            td data-field="elapsed" { (step.elapsed_ms.map_or_else(|| "-".to_owned(), seconds)) }
                            td data-field="result" { code { (step_result(step)) } }
                        }
                    }
                }
            }
            @if run.state == ScenarioState::Running {
                (change_form(who, &format!("{url}/stop"), html! {}, "Stop"))
            }
        }
    }
}

/// `GET /ui/scenarios`: the scenarios started, each step's progress (live), and a form to
/// start one.
pub async fn scenarios(State(state): State<ConsoleState>, who: LoggedIn) -> Response {
    let list: ScenarioList =
        match answer(Ok(scenarios::list(State(state.admin.clone())).await)).await {
            Ok(list) => list,
            Err(response) => return response,
        };
    let body = html! {
        p { "Scenarios started on this server (the latest ended ones are kept), newest first; "
            "each step's progress updates live." }
        div id="scenarios" data-live="scenarios" {
            @if list.scenarios.is_empty() { p.empty { "None started yet." } }
            @for run in list.scenarios.iter().rev() { (scenario_section(&who, run)) }
        }
        h2 { "Start a scenario" }
        p { "A scenario as JSON, the body of " code { "POST /v1/scenarios" } " (the keys of a scenario "
            "file, which " code { "imds ctl run-scenario" } " reads as TOML): paste it or upload a file." }
        (upload_form(&who, "/ui/scenarios", html! {
            label { "Scenario (JSON) "
                textarea name="scenario" rows="8" cols="90" placeholder=(SCENARIO_EXAMPLE) {} }
            label { "or a file " input type="file" name="scenario-file" accept=".json,application/json"; }
        }, "Start"))
    };
    frame("Scenarios", Some(&who), body).into_response()
}

/// `POST /ui/scenarios`: starts the pasted or uploaded scenario (`POST /v1/scenarios`).
pub async fn start_scenario(State(state): State<ConsoleState>, change: Change) -> Response {
    let Some(text) = change
        .get("scenario-file")
        .or_else(|| change.get("scenario"))
    else {
        return bad_form("paste a scenario or choose its file");
    };
    let scenario: Scenario = match serde_json::from_str(text) {
        Ok(scenario) => scenario,
        Err(error) => return bad_form(&format!("the scenario: {error}")),
    };
    let result = scenarios::start(State(state.admin.clone()), Body(scenario)).await;
    done(result, "/ui/scenarios")
}

/// `POST /ui/scenarios/{scenario_id}/stop`.
pub async fn stop_scenario(
    State(state): State<ConsoleState>,
    Path(scenario_id): Path<String>,
    _checked: Change,
) -> Response {
    let result = scenarios::stop(State(state.admin.clone()), PathParams(scenario_id)).await;
    done(result, "/ui/scenarios")
}

/// `GET /ui/credentials`: the audit feed, live.
pub async fn credentials(State(state): State<ConsoleState>, who: LoggedIn) -> Response {
    let entries = state
        .admin
        .audit
        .recent()
        .map(|recent| recent.after(0, super::live::FEED_BATCH))
        .unwrap_or_default();
    let body = html! {
        p { "Credentials handed out and requests refused, newest first, as the audit log records them (never a secret)." }
        table id="feed" data-live="feed" {
            thead { tr { th { "Time" } th { "Event" } th { "Endpoint" } th { "Instance" } th { "Role" } th { "Delivery" } th { "Caller uid" } th { "Key id" } th { "Reason" } } }
            tbody {
                @for entry in entries.iter().rev() {
                    tr data-seq=(entry.seq) {
                        td { (crate::audit::rfc3339(entry.time)) }
                        td { (serde_json::to_value(entry.event).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                        td { (serde_json::to_value(entry.endpoint).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                        td { (entry.instance_id.as_deref().unwrap_or("-")) }
                        td { (entry.role.as_deref().unwrap_or("-")) }
                        td { (entry.delivery.unwrap_or("-")) }
                        td { (entry.uid.map_or_else(|| "-".to_owned(), |uid| uid.to_string())) }
                        td { (entry.access_key_id.as_deref().unwrap_or("-")) }
                        td { (entry.reason.unwrap_or("-")) }
                    }
                }
            }
        }
    };
    frame("Credential use", Some(&who), body).into_response()
}
