//! `GET /ui/live`: Server-Sent Events with the request counters (`telemetry`), each instance's
//! tokenless counts, the audit feed's new records and (for the scenarios page) the scenarios'
//! progress, once per tick.
//!
//! Bounded: at most `max_streams` streams at once and `max_streams_per_session` per session
//! (429 past either), at most `FEED_BATCH` feed records per message, and a stream ends when its
//! session does.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use serde::{Deserialize, Serialize};

use super::{pages::message_page, ConsoleState, LoggedIn};
use crate::{
    admin_api::model::ScenarioList,
    audit::FeedEntry,
    telemetry::{InstanceCounts, Refusal, RequestRow},
};

/// Feed records sent at most in one message.
pub const FEED_BATCH: usize = 50;

/// `?after=SEQ`: the last feed record the page shows.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    #[serde(default)]
    after: Option<u64>,
    /// `?scenarios=1`: each message carries the scenarios' progress (the scenarios page).
    #[serde(default)]
    scenarios: Option<u8>,
    /// `?instance=ID`: each message carries that instance's requests by route and version (the
    /// instance page).
    #[serde(default)]
    instance: Option<String>,
}

/// One message.
#[derive(Debug, Serialize)]
struct Stats {
    /// `(route, status, version, count)` of every non-zero counter, since the server started.
    requests: Vec<RequestRow>,
    /// Lockdown refusals since the server started.
    lockdown: u64,
    /// Per instance: tokenless requests served and refused.
    instances: BTreeMap<String, (u64, u64)>,
    /// Audit records after the last one sent.
    feed: Vec<FeedEntry>,
    /// With `?instance=ID`: that instance's requests by route and version, and its refusals
    /// (`null` when it is not served here).
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<Option<InstanceCounts>>,
    /// With `?scenarios=1`: every scenario and its steps' progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    scenarios: Option<ScenarioList>,
}

/// What a stream sends besides the counters every page shows.
#[derive(Debug, Clone)]
struct Wanted {
    scenarios: bool,
    instance: Option<String>,
}

async fn stats(state: &ConsoleState, cursor: &mut u64, wanted: &Wanted) -> Stats {
    let requests = state.admin.requests.as_ref();
    let instances = match state.admin.registry.list().await {
        Ok(views) => views
            .into_iter()
            .map(|view| (view.record.instance_id.clone(), view.counters))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let feed = state
        .admin
        .audit
        .recent()
        .map(|recent| recent.after(*cursor, FEED_BATCH))
        .unwrap_or_default();
    if let Some(last) = feed.last() {
        *cursor = last.seq;
    }
    Stats {
        requests: requests.requests(),
        lockdown: requests.refusals(Refusal::Endpoint) + requests.refusals(Refusal::Credentials),
        instances,
        feed,
        instance: wanted.instance.as_deref().map(|instance_id| {
            state
                .admin
                .registry
                .slot(instance_id)
                .map(|slot| slot.counters.requests.read())
        }),
        scenarios: wanted.scenarios.then(|| state.admin.scenarios.list()),
    }
}

fn too_many() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        message_page(
            "Too many live streams",
            "close another console tab, then reload",
        ),
    )
        .into_response()
}

/// `GET /ui/live`.
pub async fn stream(
    State(state): State<ConsoleState>,
    who: LoggedIn,
    Query(query): Query<LiveQuery>,
) -> Response {
    let Ok(all) = state.streams.clone().try_acquire_owned() else {
        return too_many();
    };
    let Ok(own) = who.session.streams.clone().try_acquire_owned() else {
        return too_many();
    };
    let cursor = query.after.unwrap_or(0);
    let wanted = Wanted {
        scenarios: query.scenarios.is_some_and(|flag| flag != 0),
        instance: query.instance,
    };
    let tick = state.options.tick;
    // The permits and what the page wants are kept for as long as the stream lives.
    let start = (state, who.id, cursor, (all, own, wanted), Duration::ZERO);
    let events = futures_util::stream::unfold(
        start,
        move |(state, id, mut cursor, kept, wait)| async move {
            tokio::time::sleep(wait).await;
            state.sessions.get(&id)?;
            let stats = stats(&state, &mut cursor, &kept.2).await;
            let data = serde_json::to_string(&stats).unwrap_or_else(|_| "{}".to_owned());
            let event = Event::default().event("stats").data(data);
            Some((Ok::<_, Infallible>(event), (state, id, cursor, kept, tick)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
