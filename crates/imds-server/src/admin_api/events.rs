//! `/v1/instances/{id}/events`: the notices EC2 posts to instances, posted now, after a delay
//! (`In`, seconds or `90s`/`2m`/`1h`) or at a time (`At`), and cancelled or completed later.
//!
//! | `Type` | what the instance shows | event id |
//! |---|---|---|
//! | `spot-interruption` | `spot/instance-action`, `spot/termination-time` (`Time`, default two minutes after posting, as EC2 warns) | `spot-interruption` |
//! | `rebalance-recommendation` | `events/recommendations/rebalance` | `rebalance-recommendation` |
//! | `scheduled-maintenance` | an entry of `events/maintenance/scheduled`; cancelled or completed, of `history` | `instance-event-...` |
//! | `target-lifecycle-state` | `autoscaling/target-lifecycle-state` | `target-lifecycle-state` |

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use imds_core::{
    render::{aws_timestamp, parse_aws_timestamp},
    spec::{EventsSpec, MaintenanceSpec},
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::admin_api::{reply, AdminState, ApiError, Body};

const SPOT: &str = "spot-interruption";
const REBALANCE: &str = "rebalance-recommendation";
const MAINTENANCE: &str = "scheduled-maintenance";
const LIFECYCLE: &str = "target-lifecycle-state";

/// A request to post an event.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PostEvent {
    r#type: String,
    /// When it is posted: a timestamp.
    at: Option<String>,
    /// When it is posted: this long from now (`120`, `90s`, `2m`, `1h`).
    r#in: Option<Value>,
    /// Spot: `hibernate`, `stop` or `terminate`.
    action: Option<String>,
    /// Spot: when the action happens.
    time: Option<String>,
    /// Maintenance: `system-reboot`, `instance-reboot`, ...
    code: Option<String>,
    description: Option<String>,
    not_before: Option<String>,
    not_after: Option<String>,
    /// Auto Scaling: the target lifecycle state.
    state: Option<String>,
}

/// One event as listed.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventJson {
    event_id: String,
    r#type: &'static str,
    /// `pending` until posted, then `active`; maintenance events end `completed` or `canceled`.
    status: String,
    posted_time: String,
    details: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventList {
    instance_id: String,
    events: Vec<EventJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Posted {
    instance_id: String,
    event_id: String,
    posted_time: String,
}

fn parse_delay(value: &Value) -> Result<Duration, ApiError> {
    let text = match value {
        Value::Number(number) => format!("{number}s"),
        Value::String(text) => text.clone(),
        _ => {
            return Err(ApiError::invalid(
                "In: give seconds as a number or a string like 90s, 2m, 1h",
            ))
        }
    };
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let amount: i64 = digits.parse().map_err(|_| {
        ApiError::invalid(format!("In: {text:?} is not a delay like 90s, 2m or 1h"))
    })?;
    let seconds = match unit {
        "" | "s" => amount,
        "m" => amount * 60,
        "h" => amount * 3600,
        "d" => amount * 86_400,
        _ => {
            return Err(ApiError::invalid(format!(
                "In: {text:?} is not a delay like 90s, 2m or 1h"
            )))
        }
    };
    if !(0..=366 * 86_400).contains(&seconds) {
        return Err(ApiError::invalid(
            "In: the delay must be from 0 to 366 days",
        ));
    }
    Ok(Duration::seconds(seconds))
}

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    parse_aws_timestamp(text).map_err(|_| {
        ApiError::invalid(format!(
            "{field}: {text:?} is not a timestamp like 2026-11-24T12:00:00Z"
        ))
    })
}

fn posting_time(request: &PostEvent, now: OffsetDateTime) -> Result<OffsetDateTime, ApiError> {
    match (&request.at, &request.r#in) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give At or In, not both")),
        (Some(at), None) => parse_time("At", at),
        (None, Some(delay)) => Ok(now + parse_delay(delay)?),
        (None, None) => Ok(now),
    }
    // Whole seconds: IMDS timestamps have no fractions.
    .map(|when| {
        when.replace_nanosecond(0)
            .expect("zero nanoseconds is valid")
    })
}

fn new_event_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let hex: String = (0..17)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect();
    format!("instance-event-{hex}")
}

pub async fn post(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
    Body(request): Body<PostEvent>,
) -> Result<Response, ApiError> {
    let now = OffsetDateTime::now_utc();
    let posted = posting_time(&request, now)?;
    let posted_text = aws_timestamp(posted);
    let (event_id, patch) = match request.r#type.as_str() {
        SPOT => {
            let time = match &request.time {
                Some(time) => parse_time("Time", time)?,
                None => posted + Duration::minutes(2),
            };
            let action = request
                .action
                .clone()
                .unwrap_or_else(|| "terminate".to_owned());
            let patch = json!({"spot-interruption": {
                "action": action, "time": aws_timestamp(time), "notice-time": posted_text,
            }});
            (SPOT.to_owned(), patch)
        }
        REBALANCE => (
            REBALANCE.to_owned(),
            json!({"rebalance-notice": posted_text}),
        ),
        LIFECYCLE => {
            let Some(target) = &request.state else {
                return Err(ApiError::invalid(
                    "State: give the target lifecycle state, e.g. InService",
                ));
            };
            let patch = json!({"target-lifecycle-state": target, "target-lifecycle-state-time": posted_text});
            (LIFECYCLE.to_owned(), patch)
        }
        MAINTENANCE => {
            let Some(code) = &request.code else {
                return Err(ApiError::invalid(
                    "Code: give the event code, e.g. system-reboot",
                ));
            };
            let not_before = match &request.not_before {
                Some(text) => parse_time("NotBefore", text)?,
                None => posted + Duration::days(7),
            };
            // Events that end the instance (stop, retirement) have no end of window on EC2;
            // the others last two hours unless told otherwise.
            let not_after = match &request.not_after {
                Some(text) => Some(parse_time("NotAfter", text)?),
                None if ["instance-stop", "instance-retirement"].contains(&code.as_str()) => None,
                None => Some(not_before + Duration::hours(2)),
            };
            if not_after.is_some_and(|not_after| not_after < not_before) {
                return Err(ApiError::invalid("NotAfter: must not be before NotBefore"));
            }
            let view = state.registry.describe(&instance_id).await?;
            let mut maintenance = view
                .stored
                .instance
                .events
                .unwrap_or_default()
                .maintenance
                .unwrap_or_default();
            let event_id = new_event_id();
            maintenance.push(MaintenanceSpec {
                code: code.clone(),
                description: request.description.clone(),
                event_id: Some(event_id.clone()),
                not_before: aws_timestamp(not_before),
                not_after: not_after.map(aws_timestamp),
                state: Some("active".to_owned()),
                posted_time: Some(posted_text.clone()),
            });
            (event_id, json!({"maintenance": maintenance}))
        }
        other => {
            return Err(ApiError::invalid(format!(
                "Type: {other:?} is not one of {SPOT}, {REBALANCE}, {MAINTENANCE}, {LIFECYCLE}"
            )))
        }
    };
    state
        .registry
        .update(&instance_id, &json!({ "events": patch }), None)
        .await?;
    tracing::info!(message = "Event posted.", instance_id = %instance_id, event_id = %event_id, posted_time = %posted_text);
    Ok(reply(
        StatusCode::CREATED,
        Posted {
            instance_id,
            event_id,
            posted_time: posted_text,
        },
    ))
}

fn status(posted: &str, now: OffsetDateTime) -> String {
    match parse_aws_timestamp(posted) {
        Ok(when) if when > now => "pending".to_owned(),
        _ => "active".to_owned(),
    }
}

fn list_events(events: &EventsSpec, now: OffsetDateTime) -> Vec<EventJson> {
    let epoch = aws_timestamp(OffsetDateTime::UNIX_EPOCH);
    let mut list = Vec::new();
    if let Some(spot) = &events.spot_interruption {
        let posted = spot.notice_time.clone().unwrap_or_else(|| epoch.clone());
        list.push(EventJson {
            event_id: SPOT.to_owned(),
            r#type: SPOT,
            status: status(&posted, now),
            posted_time: posted,
            details: json!({"Action": spot.action, "Time": spot.time}),
        });
    }
    if let Some(notice) = &events.rebalance_notice {
        list.push(EventJson {
            event_id: REBALANCE.to_owned(),
            r#type: REBALANCE,
            status: status(notice, now),
            posted_time: notice.clone(),
            details: json!({"NoticeTime": notice}),
        });
    }
    if let Some(target) = &events.target_lifecycle_state {
        let posted = events
            .target_lifecycle_state_time
            .clone()
            .unwrap_or_else(|| epoch.clone());
        list.push(EventJson {
            event_id: LIFECYCLE.to_owned(),
            r#type: LIFECYCLE,
            status: status(&posted, now),
            posted_time: posted,
            details: json!({"State": target}),
        });
    }
    for event in events.maintenance.iter().flatten() {
        let posted = event.posted_time.clone().unwrap_or_else(|| epoch.clone());
        let state = event.state.clone().unwrap_or_else(|| "active".to_owned());
        list.push(EventJson {
            event_id: event.event_id.clone().unwrap_or_default(),
            r#type: MAINTENANCE,
            status: if state == "active" {
                status(&posted, now)
            } else {
                state
            },
            posted_time: posted,
            details: json!({
                "Code": event.code, "Description": event.description,
                "NotBefore": event.not_before, "NotAfter": event.not_after,
            }),
        });
    }
    list
}

pub async fn list(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.registry.describe(&instance_id).await?;
    let events = view.stored.instance.events.unwrap_or_default();
    Ok(reply(
        StatusCode::OK,
        EventList {
            instance_id,
            events: list_events(&events, OffsetDateTime::now_utc()),
        },
    ))
}

/// Ends an event: `canceled` or `completed`.
async fn end(
    state: AdminState,
    instance_id: String,
    event_id: String,
    ending: &'static str,
) -> Result<Response, ApiError> {
    let view = state.registry.describe(&instance_id).await?;
    let events = view.stored.instance.events.unwrap_or_default();
    let patch = match event_id.as_str() {
        SPOT | REBALANCE | LIFECYCLE if ending == "completed" => {
            return Err(ApiError::invalid(format!(
                "{event_id}: only scheduled-maintenance events complete; cancel this one"
            )))
        }
        SPOT if events.spot_interruption.is_some() => json!({"spot-interruption": null}),
        REBALANCE if events.rebalance_notice.is_some() => json!({"rebalance-notice": null}),
        LIFECYCLE if events.target_lifecycle_state.is_some() => {
            json!({"target-lifecycle-state": null, "target-lifecycle-state-time": null})
        }
        _ => {
            let mut maintenance = events.maintenance.unwrap_or_default();
            let Some(event) = maintenance
                .iter_mut()
                .find(|event| event.event_id.as_deref() == Some(event_id.as_str()))
            else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "InvalidEventID.NotFound",
                    format!("instance {instance_id} has no event {event_id}"),
                ));
            };
            if event.state.as_deref().unwrap_or("active") != "active" {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "IncorrectState",
                    format!("event {event_id} has already ended"),
                ));
            }
            event.state = Some(ending.to_owned());
            json!({"maintenance": maintenance})
        }
    };
    state
        .registry
        .update(
            &instance_id,
            &json!({ "events": patch }),
            Some(view.record.revision),
        )
        .await?;
    tracing::info!(message = "Event ended.", instance_id = %instance_id, event_id = %event_id, state = ending);
    Ok(reply(
        StatusCode::OK,
        json!({"InstanceId": instance_id, "EventId": event_id, "Status": ending}),
    ))
}

pub async fn cancel(
    State(state): State<AdminState>,
    Path((instance_id, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    end(state, instance_id, event_id, "canceled").await
}

pub async fn complete(
    State(state): State<AdminState>,
    Path((instance_id, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    end(state, instance_id, event_id, "completed").await
}
