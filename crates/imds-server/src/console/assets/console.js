// The imds console's live parts: the request charts (of all instances, or of the instance a
// page shows), the credential-use feed and the scenarios' progress, from the Server-Sent Events
// of /ui/live. Plain script, no library; drawn on canvas.
"use strict";

(function () {
  const routesCanvas = document.getElementById("routes");
  const refusalsCanvas = document.getElementById("refusals");
  const feed = document.querySelector("table[data-live=feed] tbody");
  const identity = document.querySelector("dl.identity");
  const scenarios = document.querySelector("[data-live=scenarios]");
  const byRoute = document.querySelector("table#by-route tbody");
  if (!routesCanvas && !refusalsCanvas && !feed && !scenarios) {
    return;
  }
  // On an instance's page the charts show that instance's own counts.
  const instanceId = identity ? identity.dataset.instance : null;
  const HISTORY = 60;
  const SERIES = instanceId ? ["401", "403", "429"] : ["401", "403", "429", "lockdown"];
  const COLOURS = { v1: "#d9822b", v2: "#2b7bd9", 401: "#c23030", 403: "#8f398f", 429: "#d9b92b", lockdown: "#444" };
  const history = [];
  let previous = null;

  // One instance's counts: routes as [route, version, count], refusals as [status, version, count].
  function instanceTotals(counts) {
    const sums = { v1: 0, v2: 0, 401: 0, 403: 0, 429: 0, lockdown: 0, routes: {} };
    for (const [route, version, count] of counts ? counts.routes : []) {
      sums[version] += count;
      const byVersion = sums.routes[route] || (sums.routes[route] = { v1: 0, v2: 0 });
      byVersion[version] += count;
    }
    for (const [status, , count] of counts ? counts.refusals : []) {
      sums[status] += count;
    }
    return sums;
  }

  function totals(stats) {
    if (instanceId) {
      return instanceTotals(stats.instance);
    }
    const sums = { v1: 0, v2: 0, 401: 0, 403: 0, 429: 0, lockdown: stats.lockdown, routes: {} };
    for (const [route, status, version, count] of stats.requests) {
      sums[version] += count;
      if (status in sums) {
        sums[status] += count;
      }
      const byVersion = sums.routes[route] || (sums.routes[route] = { v1: 0, v2: 0 });
      byVersion[version] += count;
    }
    return sums;
  }

  function drawRoutes(canvas, routes) {
    const context = canvas.getContext("2d");
    const names = Object.keys(routes);
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.font = "12px sans-serif";
    const max = Math.max(1, ...names.map((name) => routes[name].v1 + routes[name].v2));
    const row = Math.min(24, (canvas.height - 20) / Math.max(1, names.length));
    names.forEach((name, index) => {
      const y = index * row + 4;
      const width = canvas.width - 190;
      const v1 = (routes[name].v1 / max) * width;
      const v2 = (routes[name].v2 / max) * width;
      context.fillStyle = "#222";
      context.fillText(name, 4, y + row * 0.6);
      context.fillStyle = COLOURS.v1;
      context.fillRect(150, y, v1, row - 6);
      context.fillStyle = COLOURS.v2;
      context.fillRect(150 + v1, y, v2, row - 6);
      context.fillStyle = "#222";
      context.fillText(routes[name].v1 + " / " + routes[name].v2, 154 + v1 + v2, y + row * 0.6);
    });
    legend(context, canvas, ["v1", "v2"]);
  }

  function legend(context, canvas, keys) {
    keys.forEach((key, index) => {
      const x = canvas.width - 70 * (keys.length - index);
      context.fillStyle = COLOURS[key];
      context.fillRect(x, canvas.height - 14, 10, 10);
      context.fillStyle = "#222";
      context.fillText(key, x + 14, canvas.height - 5);
    });
  }

  // One stacked bar a second over the last HISTORY seconds, newest on the right.
  function drawRefusals(canvas) {
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.font = "12px sans-serif";
    const max = Math.max(1, ...history.map((point) => SERIES.reduce((sum, key) => sum + point[key], 0)));
    const top = 16;
    const bottom = canvas.height - 22;
    const slot = canvas.width / HISTORY;
    context.fillStyle = "#222";
    context.fillText("max " + max + "/s, last " + HISTORY + " s", 4, 12);
    context.strokeStyle = "#bbb";
    context.beginPath();
    context.moveTo(0, bottom + 0.5);
    context.lineTo(canvas.width, bottom + 0.5);
    context.stroke();
    history.forEach((point, index) => {
      const x = (HISTORY - history.length + index) * slot;
      let y = bottom;
      for (const key of SERIES) {
        const height = (point[key] / max) * (bottom - top);
        context.fillStyle = COLOURS[key];
        context.fillRect(x + 1, y - height, slot - 2, height);
        y -= height;
      }
    });
    legend(context, canvas, SERIES);
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "-" : String(text);
    row.appendChild(td);
  }

  function addFeed(entries) {
    for (const entry of entries) {
      const row = document.createElement("tr");
      row.dataset.seq = entry.seq;
      for (const key of ["time", "event", "endpoint", "instance_id", "role", "delivery", "uid", "access_key_id", "reason"]) {
        cell(row, entry[key]);
      }
      feed.insertBefore(row, feed.firstChild);
    }
    while (feed.rows.length > 500) {
      feed.deleteRow(feed.rows.length - 1);
    }
  }

  function fillByRoute(routes) {
    const rows = Object.keys(routes).sort().map((route) => {
      const row = document.createElement("tr");
      row.dataset.route = route;
      cell(row, route);
      cell(row, routes[route].v1);
      cell(row, routes[route].v2);
      return row;
    });
    byRoute.replaceChildren(...rows);
  }

  function text(element, value) {
    if (element && element.textContent !== String(value)) {
      element.textContent = value;
    }
  }

  // Each step's state and answer; a scenario's state, and its stop button once it ended.
  function updateScenarios(list) {
    for (const run of list.Scenarios) {
      const section = scenarios.querySelector('[data-scenario="' + CSS.escape(run.ScenarioId) + '"]');
      if (!section) {
        continue;
      }
      section.dataset.state = run.State;
      text(section.querySelector('[data-field="state"]'), run.State);
      text(section.querySelector('[data-field="ended"]'), run.EndedAt || "-");
      if (run.State !== "running") {
        for (const form of section.querySelectorAll("form.change")) {
          form.remove();
        }
      }
      for (const step of run.Steps) {
        const row = section.querySelector('tr[data-step="' + step.Index + '"]');
        if (!row) {
          continue;
        }
        row.dataset.state = step.State;
        text(row.querySelector('[data-field="state"]'), step.State);
        const elapsed = step.ElapsedMs === null || step.ElapsedMs === undefined ? "-" : (step.ElapsedMs / 1000).toFixed(1) + " s";
        text(row.querySelector('[data-field="elapsed"]'), elapsed);
        const result = step.Error ? step.Error.Code + ": " + step.Error.Message : step.Answer ? JSON.stringify(step.Answer) : "";
        text(row.querySelector('[data-field="result"] code'), result);
      }
    }
  }

  let updates = 0;

  function update(stats) {
    const now = totals(stats);
    updates += 1;
    document.body.dataset.updates = updates;
    for (const key of ["v1", "v2", ...SERIES]) {
      for (const element of document.querySelectorAll('[data-stat="' + key + '"]')) {
        element.textContent = now[key];
      }
    }
    const total = now.v1 + now.v2;
    for (const element of document.querySelectorAll('[data-stat="v1-share"]')) {
      element.textContent = total ? Math.round((now.v1 / total) * 100) + " %" : "-";
    }
    if (byRoute) {
      fillByRoute(now.routes);
    }
    if (scenarios && stats.scenarios) {
      updateScenarios(stats.scenarios);
    }
    if (identity) {
      const counts = stats.instances[identity.dataset.instance];
      if (counts) {
        document.querySelector('[data-stat="no-token"]').textContent = counts[0];
        document.querySelector('[data-stat="no-token-rejected"]').textContent = counts[1];
      }
    }
    if (previous) {
      const point = {};
      for (const key of SERIES) {
        point[key] = Math.max(0, now[key] - previous[key]);
      }
      history.push(point);
      if (history.length > HISTORY) {
        history.shift();
      }
    }
    previous = now;
    if (routesCanvas) {
      drawRoutes(routesCanvas, now.routes);
    }
    if (refusalsCanvas) {
      drawRefusals(refusalsCanvas);
    }
    if (feed) {
      addFeed(stats.feed);
    }
  }

  let after = 0;
  if (feed) {
    for (const row of feed.rows) {
      after = Math.max(after, Number(row.dataset.seq) || 0);
    }
  }
  let source = null;
  function connect() {
    let url = "/ui/live?after=" + after;
    if (instanceId) {
      url += "&instance=" + encodeURIComponent(instanceId);
    }
    if (scenarios) {
      url += "&scenarios=1";
    }
    source = new EventSource(url);
    source.addEventListener("stats", (message) => {
      const stats = JSON.parse(message.data);
      for (const entry of stats.feed) {
        after = Math.max(after, entry.seq);
      }
      update(stats);
    });
    // Refused (too many streams) or cut: try again a little later, as long as the page is open.
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, 2000);
      }
    });
  }
  connect();
  window.addEventListener("pagehide", () => source.close());
})();
