//! `/v1/instances/{id}/events`: the notices EC2 posts to instances, posted now, after a delay
//! (`In`, seconds or `90s`/`2m`/`1h`) or at a time (`At`), and cancelled or completed later.
//!
//! | `Type` | what the instance shows | event id |
//! |---|---|---|
//! | `spot-interruption` | `spot/instance-action`, `spot/termination-time` (`Time`, default two minutes after posting, as EC2 warns) | `spot-interruption` |
//! | `rebalance-recommendation` | `events/recommendations/rebalance` | `rebalance-recommendation` |
//! | `scheduled-maintenance` | an entry of `events/maintenance/scheduled`; cancelled or completed, of `history` | `instance-event-...` |
//! | `target-lifecycle-state` | `autoscaling/target-lifecycle-state` | `target-lifecycle-state` |

use axum::{extract::State, http::StatusCode, response::Response};
use imds_core::{
    render::{aws_timestamp, parse_aws_timestamp},
    spec::{EventsSpec, MaintenanceSpec, SpotSpec},
};
use serde::{Serialize, Serializer};
use time::{Duration, OffsetDateTime};

use crate::admin_api::{
    model::{
        Delay, ErrorBody, ErrorCode, Event, EventDetails, EventEnded, EventList, EventPosted,
        EventStatus, EventType, LifecycleDetails, MaintenanceDetails, PostEvent, RebalanceDetails,
        SpotAction, SpotDetails,
    },
    reply, AdminState, ApiError, Body, PathParams,
};

/// One key of a JSON merge patch (RFC 7396): a new value, or `null` to remove the key.
enum Change<T> {
    Set(T),
    Remove,
}

impl<T: Serialize> Serialize for Change<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Change::Set(value) => value.serialize(serializer),
            Change::Remove => serializer.serialize_none(),
        }
    }
}

/// A merge patch of an instance description's `events`; absent keys stay as they are.
#[derive(Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct EventsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    spot_interruption: Option<Change<SpotSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebalance_notice: Option<Change<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_lifecycle_state: Option<Change<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_lifecycle_state_time: Option<Change<String>>,
    /// Arrays are replaced whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<Vec<MaintenanceSpec>>,
}

/// The merge patch of an instance description that changes its events.
#[derive(Serialize)]
struct InstanceEventsPatch {
    events: EventsPatch,
}

impl EventsPatch {
    fn into_patch(self) -> serde_json::Value {
        serde_json::to_value(InstanceEventsPatch { events: self })
            .expect("merge patches of string fields always serialise")
    }
}

fn parse_delay(delay: &Delay) -> Result<Duration, ApiError> {
    let seconds = delay
        .to_seconds()
        .map_err(|error| ApiError::invalid(format!("In: {error}")))?;
    Ok(Duration::seconds(
        i64::try_from(seconds).expect("at most 366 days of seconds fits an i64"),
    ))
}

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    parse_aws_timestamp(text).map_err(|_| {
        ApiError::invalid(format!(
            "{field}: {text:?} is not a timestamp like 2026-11-24T12:00:00Z"
        ))
    })
}

/// `when + by`, or a 400 naming `field` when that is past the last representable time.
fn later(field: &str, when: OffsetDateTime, by: Duration) -> Result<OffsetDateTime, ApiError> {
    when.checked_add(by).ok_or_else(|| {
        ApiError::invalid(format!(
            "{field}: its default is too far in the future; give {field}"
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

/// `POST /v1/instances/{instance_id}/events`.
#[utoipa::path(
    post,
    path = "/v1/instances/{instance_id}/events",
    operation_id = "PostInstanceEvent",
    tag = "events",
    summary = "Post an event now, after a delay (In) or at a time (At)",
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body = PostEvent,
    responses(
        (status = 201, description = "Posted (shown from PostedTime on)", body = EventPosted,
            links(
                ("ListEvents" = (operation_id = "DescribeInstanceEvents",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("CancelEvent" = (operation_id = "CancelInstanceEvent",
                    parameters(("instance_id" = "$response.body#/InstanceId"),
                        ("event_id" = "$response.body#/EventId")))),
                ("CompleteEvent" = (operation_id = "CompleteInstanceEvent",
                    parameters(("instance_id" = "$response.body#/InstanceId"),
                        ("event_id" = "$response.body#/EventId")))),
            )),
        (status = 400, description = "The body, a timestamp or a delay is not valid, or a field the type needs is missing", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The instance changed meanwhile", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
#[allow(
    clippy::disallowed_methods,
    reason = "a control-API request is answered at the time it arrives"
)]
pub async fn post(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
    Body(request): Body<PostEvent>,
) -> Result<Response, ApiError> {
    let now = OffsetDateTime::now_utc();
    let posted = posting_time(&request, now)?;
    let posted_text = aws_timestamp(posted);
    let (event_id, patch) = match request.r#type {
        EventType::SpotInterruption => {
            let time = match &request.time {
                Some(time) => parse_time("Time", time)?,
                None => later("Time", posted, Duration::minutes(2))?,
            };
            let action = request.action.unwrap_or(SpotAction::Terminate);
            let patch = EventsPatch {
                spot_interruption: Some(Change::Set(SpotSpec {
                    action: action.as_str().to_owned(),
                    time: aws_timestamp(time),
                    notice_time: Some(posted_text.clone()),
                })),
                ..EventsPatch::default()
            };
            (EventType::SpotInterruption.as_str().to_owned(), patch)
        }
        EventType::RebalanceRecommendation => (
            EventType::RebalanceRecommendation.as_str().to_owned(),
            EventsPatch {
                rebalance_notice: Some(Change::Set(posted_text.clone())),
                ..EventsPatch::default()
            },
        ),
        EventType::TargetLifecycleState => {
            let Some(target) = request.state.clone().filter(|state| !state.is_empty()) else {
                return Err(ApiError::invalid(
                    "State: give the target lifecycle state, e.g. InService",
                ));
            };
            let patch = EventsPatch {
                target_lifecycle_state: Some(Change::Set(target)),
                target_lifecycle_state_time: Some(Change::Set(posted_text.clone())),
                ..EventsPatch::default()
            };
            (EventType::TargetLifecycleState.as_str().to_owned(), patch)
        }
        EventType::ScheduledMaintenance => {
            let Some(code) = request.code else {
                return Err(ApiError::invalid(
                    "Code: give the event code, e.g. system-reboot",
                ));
            };
            let not_before = match &request.not_before {
                Some(text) => parse_time("NotBefore", text)?,
                None => later("NotBefore", posted, Duration::days(7))?,
            };
            // Events that end the instance (stop, retirement) have no end of window on EC2;
            // the others last two hours unless told otherwise.
            let not_after = match &request.not_after {
                Some(text) => Some(parse_time("NotAfter", text)?),
                None if code.ends_the_instance() => None,
                None => Some(later("NotAfter", not_before, Duration::hours(2))?),
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
                code: code.as_str().to_owned(),
                description: request.description.clone(),
                event_id: Some(event_id.clone()),
                not_before: aws_timestamp(not_before),
                not_after: not_after.map(aws_timestamp),
                state: Some(EventStatus::Active.as_str().to_owned()),
                posted_time: Some(posted_text.clone()),
            });
            let patch = EventsPatch {
                maintenance: Some(maintenance),
                ..EventsPatch::default()
            };
            (event_id, patch)
        }
    };
    state
        .registry
        .update(&instance_id, &patch.into_patch(), None)
        .await?;
    tracing::info!(message = "Event posted.", instance_id = %instance_id, event_id = %event_id, posted_time = %posted_text);
    Ok(reply(
        StatusCode::CREATED,
        EventPosted {
            instance_id,
            event_id,
            posted_time: posted_text,
        },
    ))
}

fn status(posted: &str, now: OffsetDateTime) -> EventStatus {
    match parse_aws_timestamp(posted) {
        Ok(when) if when > now => EventStatus::Pending,
        _ => EventStatus::Active,
    }
}

fn list_events(events: &EventsSpec, now: OffsetDateTime) -> Vec<Event> {
    let epoch = aws_timestamp(OffsetDateTime::UNIX_EPOCH);
    let mut list = Vec::new();
    if let Some(spot) = &events.spot_interruption {
        let posted = spot.notice_time.clone().unwrap_or_else(|| epoch.clone());
        list.push(Event {
            event_id: EventType::SpotInterruption.as_str().to_owned(),
            r#type: EventType::SpotInterruption,
            status: status(&posted, now),
            posted_time: posted,
            details: EventDetails::Spot(SpotDetails {
                action: spot.action.clone(),
                time: spot.time.clone(),
            }),
        });
    }
    if let Some(notice) = &events.rebalance_notice {
        list.push(Event {
            event_id: EventType::RebalanceRecommendation.as_str().to_owned(),
            r#type: EventType::RebalanceRecommendation,
            status: status(notice, now),
            posted_time: notice.clone(),
            details: EventDetails::Rebalance(RebalanceDetails {
                notice_time: notice.clone(),
            }),
        });
    }
    if let Some(target) = &events.target_lifecycle_state {
        let posted = events
            .target_lifecycle_state_time
            .clone()
            .unwrap_or_else(|| epoch.clone());
        list.push(Event {
            event_id: EventType::TargetLifecycleState.as_str().to_owned(),
            r#type: EventType::TargetLifecycleState,
            status: status(&posted, now),
            posted_time: posted,
            details: EventDetails::Lifecycle(LifecycleDetails {
                state: target.clone(),
            }),
        });
    }
    for event in events.maintenance.iter().flatten() {
        let posted = event.posted_time.clone().unwrap_or_else(|| epoch.clone());
        let status = match event.state.as_deref() {
            None | Some("active") => status(&posted, now),
            Some("completed") => EventStatus::Completed,
            // The description's `state` is checked when it is resolved: `active`, `completed`
            // or `canceled`.
            Some(_) => EventStatus::Canceled,
        };
        list.push(Event {
            event_id: event.event_id.clone().unwrap_or_default(),
            r#type: EventType::ScheduledMaintenance,
            status,
            posted_time: posted,
            details: EventDetails::Maintenance(MaintenanceDetails {
                code: event.code.clone(),
                description: event.description.clone(),
                not_before: event.not_before.clone(),
                not_after: event.not_after.clone(),
            }),
        });
    }
    list
}

/// `GET /v1/instances/{instance_id}/events`.
#[utoipa::path(
    get,
    path = "/v1/instances/{instance_id}/events",
    operation_id = "DescribeInstanceEvents",
    tag = "events",
    summary = "List the instance's events",
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "Its events", body = EventList),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
#[allow(
    clippy::disallowed_methods,
    reason = "a control-API request is answered at the time it arrives"
)]
pub async fn list(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
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
    ending: EventStatus,
) -> Result<Response, ApiError> {
    let view = state.registry.describe(&instance_id).await?;
    let events = view.stored.instance.events.unwrap_or_default();
    let spot = EventType::SpotInterruption.as_str();
    let rebalance = EventType::RebalanceRecommendation.as_str();
    let lifecycle = EventType::TargetLifecycleState.as_str();
    let id = event_id.as_str();
    let patch = if [spot, rebalance, lifecycle].contains(&id) && ending == EventStatus::Completed {
        return Err(ApiError::invalid(format!(
            "{event_id}: only scheduled-maintenance events complete; cancel this one"
        )));
    } else if id == spot && events.spot_interruption.is_some() {
        EventsPatch {
            spot_interruption: Some(Change::Remove),
            ..EventsPatch::default()
        }
    } else if id == rebalance && events.rebalance_notice.is_some() {
        EventsPatch {
            rebalance_notice: Some(Change::Remove),
            ..EventsPatch::default()
        }
    } else if id == lifecycle && events.target_lifecycle_state.is_some() {
        EventsPatch {
            target_lifecycle_state: Some(Change::Remove),
            target_lifecycle_state_time: Some(Change::Remove),
            ..EventsPatch::default()
        }
    } else {
        let mut maintenance = events.maintenance.unwrap_or_default();
        let Some(event) = maintenance
            .iter_mut()
            .find(|event| event.event_id.as_deref() == Some(id))
        else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::InvalidEventIdNotFound,
                format!("instance {instance_id} has no event {event_id}"),
            ));
        };
        if event.state.as_deref().unwrap_or("active") != EventStatus::Active.as_str() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::IncorrectState,
                format!("event {event_id} has already ended"),
            ));
        }
        event.state = Some(ending.as_str().to_owned());
        EventsPatch {
            maintenance: Some(maintenance),
            ..EventsPatch::default()
        }
    };
    state
        .registry
        .update(
            &instance_id,
            &patch.into_patch(),
            Some(view.record.revision),
        )
        .await?;
    tracing::info!(message = "Event ended.", instance_id = %instance_id, event_id = %event_id, state = ending.as_str());
    Ok(reply(
        StatusCode::OK,
        EventEnded {
            instance_id,
            event_id,
            status: ending,
        },
    ))
}

/// `POST /v1/instances/{instance_id}/events/{event_id}/cancel`.
#[utoipa::path(
    post,
    path = "/v1/instances/{instance_id}/events/{event_id}/cancel",
    operation_id = "CancelInstanceEvent",
    tag = "events",
    summary = "Cancel an event (a maintenance event moves to history as canceled; the others disappear)",
    params(
        ("instance_id" = String, Path, description = "The instance's id"),
        ("event_id" = String, Path, description = "The event's id, as posting it answered"),
    ),
    responses(
        (status = 200, description = "Cancelled", body = EventEnded),
        (status = 404, description = "No such instance, or it has no such event", body = ErrorBody),
        (status = 409, description = "The event has already ended, or the instance changed meanwhile", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AdminState>,
    PathParams((instance_id, event_id)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    end(state, instance_id, event_id, EventStatus::Canceled).await
}

/// `POST /v1/instances/{instance_id}/events/{event_id}/complete`.
#[utoipa::path(
    post,
    path = "/v1/instances/{instance_id}/events/{event_id}/complete",
    operation_id = "CompleteInstanceEvent",
    tag = "events",
    summary = "Complete a maintenance event (it moves to history as completed)",
    params(
        ("instance_id" = String, Path, description = "The instance's id"),
        ("event_id" = String, Path, description = "The maintenance event's id"),
    ),
    responses(
        (status = 200, description = "Completed", body = EventEnded),
        (status = 400, description = "Only maintenance events complete", body = ErrorBody),
        (status = 404, description = "No such instance, or it has no such event", body = ErrorBody),
        (status = 409, description = "The event has already ended, or the instance changed meanwhile", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<AdminState>,
    PathParams((instance_id, event_id)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    end(state, instance_id, event_id, EventStatus::Completed).await
}
