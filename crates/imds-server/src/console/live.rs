//! `GET /ui/live`: Server-Sent Events with the request counters (`telemetry`), each instance's
//! tokenless counts, and the audit feed's new records, once per tick.
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
    audit::FeedEntry,
    telemetry::{Refusal, RequestRow},
};

/// Feed records sent at most in one message.
pub const FEED_BATCH: usize = 50;

/// `?after=SEQ`: the last feed record the page shows.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    #[serde(default)]
    after: Option<u64>,
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
}

async fn stats(state: &ConsoleState, cursor: &mut u64) -> Stats {
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
    let tick = state.options.tick;
    let start = (state, who.id, cursor, (all, own), Duration::ZERO);
    let events = futures_util::stream::unfold(
        start,
        move |(state, id, mut cursor, permits, wait)| async move {
            tokio::time::sleep(wait).await;
            state.sessions.get(&id)?;
            let stats = stats(&state, &mut cursor).await;
            let data = serde_json::to_string(&stats).unwrap_or_else(|_| "{}".to_owned());
            let event = Event::default().event("stats").data(data);
            Some((
                Ok::<_, Infallible>(event),
                (state, id, cursor, permits, tick),
            ))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
