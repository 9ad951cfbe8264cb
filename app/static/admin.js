/* The admin page at /ui/admin: plain JavaScript, talking only to this server with an admin key.
 *
 *   GET /admin/keys, POST /admin/keys, PATCH /admin/keys/{id} (limits), POST /admin/keys/{id}/rotate|revoke
 *   GET /usage?group_by=day|model|key&since&until&key_id     the charts, their tables and the budgets
 *   GET /admin/upstreams                                      deployments' health
 *   GET /admin/calls?key_id&model&provider&status&since&until&request_id&limit&cursor, GET /admin/calls/{id}
 *
 * The admin key is kept in this page's memory only (never in storage); a new or rotated key's value is
 * shown once in its dialog and dropped when the dialog closes. Everything the API returns is written
 * with textContent (or as SVG attributes), never parsed as HTML. Charts are drawn here as inline SVG
 * (a few bars need no charting library), each with a title, a description and a table of its figures.
 */
"use strict";

(function () {
  var THEME_KEY = "aiserver.theme";  // shared with /ui
  var SVG_NS = "http://www.w3.org/2000/svg";
  var root = document.documentElement;
  var systemDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  var adminKey = null;  // in memory only
  var keys = [];        // as GET /admin/keys lists them
  var callsCursor = null;
  var el = {};

  function storedTheme() {
    try { return localStorage.getItem(THEME_KEY); } catch (e) { return null; }
  }

  function applyTheme() {
    var chosen = storedTheme();
    var active = chosen === "light" || chosen === "dark" ? chosen : (systemDark && systemDark.matches ? "dark" : "light");
    root.setAttribute("data-theme-active", active);
    return active;
  }

  applyTheme();

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[id]").forEach(function (node) {
      el[node.id.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); })] = node;
    });
    setupTheme();
    setupKeyDialog();
    setupKeys();
    setupUsage();
    setupCalls();
    el.healthRefresh.addEventListener("click", loadHealth);
    askForKey(null);
  });

  // --- the admin key and calls to the server ---------------------------------------------------------

  function setupKeyDialog() {
    el.keyButton.addEventListener("click", function () { askForKey(null); });
    el.keyForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var key = el.keyInput.value.trim();
      if (!key) { el.keyInput.focus(); return; }
      adminKey = key;
      el.keyInput.value = "";
      el.keyDialog.close();
      loadAll();
    });
    el.keyCancel.addEventListener("click", function () { el.keyDialog.close(); });
  }

  function askForKey(reason) {
    el.keyReason.textContent = reason ||
      "This page needs an admin key. It is kept in this page's memory only: reloading asks again.";
    el.keyInput.value = "";
    if (!el.keyDialog.open) el.keyDialog.showModal();
    el.keyInput.focus();
  }

  /* A JSON call with the admin key: the answer's body, or an Error with the server's message and status.
     A refused key (401, or 403 for a key that is not an admin's) brings the key prompt back. */
  function api(path, options) {
    options = options || {};
    var headers = {"Accept": "application/json"};
    if (adminKey) headers["Authorization"] = "Bearer " + adminKey;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {method: options.method || "GET", headers: headers,
                        body: options.body === undefined ? undefined : JSON.stringify(options.body)})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok) return body;
          var error = new Error((body.error && body.error.message) || ("HTTP " + response.status));
          error.status = response.status;
          if (response.status === 401 || (response.status === 403 && body.error && body.error.code === "admin_required")) {
            askForKey("The server refused this key: " + error.message);
            error.handled = true;
          }
          throw error;
        });
      });
  }

  /* The keys first: a key that is refused there is asked again once, before anything else is asked. */
  function loadAll() {
    hideNotice();
    loadKeys().then(function () {
      loadUsage();
      loadHealth();
      loadCalls(false);
    }).catch(report);
  }

  function report(error) {
    if (!error.handled) showNotice(error.message);
  }

  function showNotice(text) {
    el.notice.textContent = text;
    el.notice.hidden = false;
  }

  function hideNotice() {
    el.notice.hidden = true;
    el.notice.textContent = "";
  }

  // --- keys ------------------------------------------------------------------------------------------

  function setupKeys() {
    el.createForm.addEventListener("submit", function (event) {
      event.preventDefault();
      createKey();
    });
    el.secretCopy.addEventListener("click", copySecret);
    el.secretDialog.addEventListener("close", function () {  // the value is shown this once
      el.secretValue.value = "";
      el.secretCopied.textContent = "";
    });
    el.limitsForm.addEventListener("submit", function (event) {
      event.preventDefault();
      saveLimits();
    });
    el.limitsCancel.addEventListener("click", function () { el.limitsDialog.close(); });
  }

  function loadKeys() {
    return api("/admin/keys").then(function (body) {
      keys = body.keys;
      fillKeysTable();
      fillKeyChoices(el.usageKey);
      fillKeyChoices(el.callsKey);
    });
  }

  function keyName(id) {
    if (id === null || id === undefined) return "(no key)";
    var key = keys.filter(function (k) { return k.id === id; })[0];
    return key ? key.name : id;
  }

  function fillKeyChoices(select) {
    var chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    keys.forEach(function (key) {
      var option = new Option(key.name + " (" + key.hint + ")", key.id);
      select.add(option);
    });
    select.value = keys.some(function (k) { return k.id === chosen; }) ? chosen : "";
  }

  function fillKeysTable() {
    var body = el.keysTable.tBodies[0];
    body.textContent = "";
    keys.forEach(function (key) {
      var row = body.insertRow();
      row.setAttribute("data-key-id", key.id);
      var name = cell(row, key.name, "th");
      name.scope = "row";
      if (key.admin) name.appendChild(badge("admin", "neutral"));
      cell(row, key.hint).className = "mono";
      cell(row, "").appendChild(badge(key.status, key.status === "active" ? "ok" : "bad"));
      cell(row, key.models ? key.models.join(", ") : "every model");
      cell(row, limitsText(key.limits));
      cell(row, key.expires_at ? when(key.expires_at) : "never");
      var actions = cell(row, "");
      actions.className = "key-actions";
      if (key.status !== "revoked") {
        actions.appendChild(actionButton("Edit limits", key, function () { openLimits(key); }));
        actions.appendChild(actionButton("Rotate", key, function () { rotateKey(key); }));
        actions.appendChild(actionButton("Revoke", key, function () { revokeKey(key); }));
      }
    });
  }

  function actionButton(label, key, onClick) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button ghost small";
    button.textContent = label;
    button.setAttribute("aria-label", label + " of " + key.name);
    button.addEventListener("click", onClick);
    return button;
  }

  function limitsText(limits) {
    var parts = [];
    if (limits.rpm) parts.push(count(limits.rpm) + " req/min");
    if (limits.tpm) parts.push(count(limits.tpm) + " tokens/min");
    if (limits.daily_tokens) parts.push(count(limits.daily_tokens) + " tokens/day");
    if (limits.monthly_budget_usd !== null) parts.push(usd(limits.monthly_budget_usd) + "/month");
    return parts.length ? parts.join(" · ") : "no limits";
  }

  function numberOrNull(input) {
    return input.value.trim() === "" ? null : Number(input.value);
  }

  function createKey() {
    el.createError.textContent = "";
    var name = el.newName.value.trim();
    if (!name) {
      el.createError.textContent = "Give the key a name.";
      el.newName.setAttribute("aria-invalid", "true");
      el.newName.focus();
      return;
    }
    el.newName.removeAttribute("aria-invalid");
    var models = el.newModels.value.split(",").map(function (m) { return m.trim(); }).filter(Boolean);
    var body = {name: name, admin: el.newAdmin.checked, scopes: el.newScopeGists.checked ? ["gists"] : [],
                models: models.length ? models : null, rpm: numberOrNull(el.newRpm), tpm: numberOrNull(el.newTpm),
                daily_tokens: numberOrNull(el.newDailyTokens), monthly_budget_usd: numberOrNull(el.newBudget),
                expires_at: el.newExpires.value ? el.newExpires.value + ":00Z" : null};
    el.createButton.disabled = true;
    api("/admin/keys", {method: "POST", body: body}).then(function (made) {
      el.createForm.reset();
      showSecret(made, "New key");
      return loadKeys();
    }).catch(function (error) {
      if (!error.handled) el.createError.textContent = "Not created: " + error.message;
    }).then(function () { el.createButton.disabled = false; });
  }

  function showSecret(made, title) {
    el.secretTitle.textContent = title;
    el.secretName.textContent = made.name;
    el.secretValue.value = made.key;
    el.secretCopied.textContent = "";
    el.secretDialog.showModal();
    el.secretValue.select();
  }

  function copySecret() {
    var value = el.secretValue.value;
    var done = function () { el.secretCopied.textContent = "Copied."; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(value).then(done, function () {
        el.secretCopied.textContent = "Could not copy: select the key and copy it.";
      });
    } else {
      el.secretValue.select();
      document.execCommand("copy");
      done();
    }
  }

  function confirmAction(title, text, label) {
    el.confirmTitle.textContent = title;
    el.confirmText.textContent = text;
    el.confirmOk.textContent = label;
    el.confirmDialog.returnValue = "";
    el.confirmDialog.showModal();
    el.confirmCancel.focus();
    return new Promise(function (resolve) {
      el.confirmDialog.addEventListener("close", function () {
        resolve(el.confirmDialog.returnValue === "ok");
      }, {once: true});
    });
  }

  function rotateKey(key) {
    confirmAction("Rotate \u201c" + key.name + "\u201d?", "A new value replaces the key's; the old one stops " +
                  "working at once. Its settings and usage stay.", "Rotate").then(function (ok) {
      if (!ok) return;
      api("/admin/keys/" + encodeURIComponent(key.id) + "/rotate", {method: "POST"}).then(function (made) {
        showSecret(made, "Rotated key");
        return loadKeys();
      }).catch(report);
    });
  }

  function revokeKey(key) {
    confirmAction("Revoke \u201c" + key.name + "\u201d?", "It is refused from its next request on. This cannot " +
                  "be undone.", "Revoke").then(function (ok) {
      if (!ok) return;
      api("/admin/keys/" + encodeURIComponent(key.id) + "/revoke", {method: "POST"}).then(loadKeys)
        .then(loadBudgets).catch(report);
    });
  }

  var editing = null;

  function openLimits(key) {
    editing = key;
    el.limitsName.textContent = key.name;
    el.limitsError.textContent = "";
    el.editRpm.value = key.limits.rpm === null ? "" : key.limits.rpm;
    el.editTpm.value = key.limits.tpm === null ? "" : key.limits.tpm;
    el.editDailyTokens.value = key.limits.daily_tokens === null ? "" : key.limits.daily_tokens;
    el.editBudget.value = key.limits.monthly_budget_usd === null ? "" : key.limits.monthly_budget_usd;
    el.limitsDialog.showModal();
    el.editRpm.focus();
  }

  function saveLimits() {
    var body = {rpm: numberOrNull(el.editRpm), tpm: numberOrNull(el.editTpm),
                daily_tokens: numberOrNull(el.editDailyTokens), monthly_budget_usd: numberOrNull(el.editBudget)};
    api("/admin/keys/" + encodeURIComponent(editing.id), {method: "PATCH", body: body}).then(function () {
      el.limitsDialog.close();
      return loadKeys().then(loadBudgets);
    }).catch(function (error) {
      if (!error.handled) el.limitsError.textContent = "Not saved: " + error.message;
    });
  }

  // --- usage, spend and budgets ------------------------------------------------------------------------

  function setupUsage() {
    el.usageDays.addEventListener("change", loadUsage);
    el.usageKey.addEventListener("change", loadUsage);
  }

  function today() { return new Date().toISOString().slice(0, 10); }

  function addDays(isoDay, days) {
    var date = new Date(isoDay + "T00:00:00Z");
    date.setUTCDate(date.getUTCDate() + days);
    return date.toISOString().slice(0, 10);
  }

  function usage(groupBy, since, until, keyId) {
    var query = "group_by=" + groupBy + "&since=" + since + "&until=" + until;
    if (keyId) query += "&key_id=" + encodeURIComponent(keyId);
    return api("/usage?" + query).then(function (body) { return body.rows; });
  }

  /* The three charts over the chosen range (UTC days, ending today): spend per day, tokens by model,
     spend by key; then the budgets (this month and today, whatever the range). */
  function loadUsage() {
    var until = today(), since = addDays(until, 1 - Number(el.usageDays.value)), keyId = el.usageKey.value;
    el.usageStatus.textContent = "Loading\u2026";
    Promise.all([usage("day", since, until, keyId), usage("model", since, until, keyId),
                 usage("key", since, until, keyId)]).then(function (groups) {
      var days = everyDay(groups[0], since, until);
      var total = groups[0].reduce(function (sum, row) { return sum + row.cost_usd; }, 0);
      var calls = groups[0].reduce(function (sum, row) { return sum + row.calls; }, 0);
      el.usageStatus.textContent = count(calls) + " calls, " + usd(total) + " from " + since + " to " + until + ".";
      drawChart(el.chartDay, days.map(function (d) { return {label: d.day, value: d.cost_usd, row: d}; }),
                {vertical: true, format: usd, unit: "spend"});
      drawChart(el.chartModel, groups[1].map(function (r) {
        return {label: r.provider ? r.provider + "/" + r.model : r.model, value: r.total_tokens, row: r};
      }).sort(byValue), {format: count, unit: "tokens"});
      drawChart(el.chartKey, groups[2].map(function (r) {
        return {label: keyName(r.key), value: r.cost_usd, row: r};
      }).sort(byValue), {format: usd, unit: "spend"});
      fillUsageTable(el.chartDay, "Day", days.map(function (d) { return [d.day, d]; }));
      fillUsageTable(el.chartModel, "Model", groups[1].map(function (r) { return [r.model, r]; }));
      fillUsageTable(el.chartKey, "Key", groups[2].map(function (r) { return [keyName(r.key), r]; }));
    }).catch(function (error) {
      el.usageStatus.textContent = "";
      report(error);
    });
    loadBudgets();
  }

  function byValue(a, b) { return b.value - a.value; }

  function everyDay(rows, since, until) {
    var byDay = {};
    rows.forEach(function (row) { byDay[row.day] = row; });
    var days = [];
    for (var day = since; day <= until; day = addDays(day, 1)) {
      days.push(byDay[day] || {day: day, calls: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0,
                               cost_usd: 0});
    }
    return days;
  }

  var USAGE_COLUMNS = [["Calls", "calls", count], ["Prompt tokens", "prompt_tokens", count],
                       ["Completion tokens", "completion_tokens", count], ["Total tokens", "total_tokens", count],
                       ["Cost (USD)", "cost_usd", usdExact]];

  function fillUsageTable(block, first, rows) {
    var table = block.querySelector("table");
    table.textContent = "";
    table.createCaption().textContent = block.querySelector("figcaption").textContent;
    table.parentNode.setAttribute("aria-label", "Table: " + block.querySelector("figcaption").textContent);
    var head = table.createTHead().insertRow();
    [first].concat(USAGE_COLUMNS.map(function (c) { return c[0]; })).forEach(function (label) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = label;
      head.appendChild(th);
    });
    var body = table.createTBody();
    rows.forEach(function (pair) {
      var row = body.insertRow();
      cell(row, pair[0], "th").scope = "row";
      USAGE_COLUMNS.forEach(function (c) { cell(row, c[2](pair[1][c[1]])).className = "num"; });
    });
    if (!rows.length) cell(body.insertRow(), "No calls in this range.").colSpan = USAGE_COLUMNS.length + 1;
  }

  /* A bar chart as inline SVG, drawn at its box's width in pixels (so its text keeps its size on any
     screen): vertical bars for days, horizontal bars with their labels for groups. Its title and
     description name the largest bar; the table beside it has every figure. */
  function drawChart(block, items, options) {
    var box = block.querySelector(".chart");
    var id = block.id + "-svg";
    box.textContent = "";
    var peak = items.reduce(function (max, item) { return Math.max(max, item.value); }, 0);
    var top = items.filter(function (item) { return item.value === peak; })[0];
    var title = block.querySelector("figcaption").textContent;
    var width = Math.max(280, Math.round(box.clientWidth || 560));
    var height = options.vertical ? 180 : Math.max(40, items.length * 28 + 8);
    var svg = svgNode("svg", {viewBox: "0 0 " + width + " " + height, role: "img",
                              "aria-labelledby": id + "-title " + id + "-desc", "class": "chart-svg"});
    svg.appendChild(svgNode("title", {id: id + "-title"}, title));
    svg.appendChild(svgNode("desc", {id: id + "-desc"}, peak
      ? items.length + " bars; the largest, " + top.label + ", is " + options.format(peak) +
        ". The table that follows has every figure."
      : "Nothing in this range."));
    if (options.vertical) verticalBars(svg, items, peak, width, options);
    else horizontalBars(svg, items, peak, width, options);
    box.appendChild(svg);
  }

  var BAR_AREA = [22, 156];  // a vertical chart's bars, from their top to the axis

  function verticalBars(svg, items, peak, width, options) {
    var top = BAR_AREA[0], base = BAR_AREA[1], slot = width / Math.max(1, items.length);
    if (peak) svg.appendChild(svgNode("text", {x: 0, y: 13}, "peak " + options.format(peak)));
    svg.appendChild(svgNode("line", {x1: 0, x2: width, y1: base + 0.5, y2: base + 0.5, "class": "axis"}));
    var every = Math.ceil(items.length / Math.max(2, Math.floor(width / 60)));  // a label per 60 px at most
    items.forEach(function (item, i) {
      if (item.value) {
        var h = Math.max(2, item.value / peak * (base - top));
        var bar = svgNode("rect", {x: i * slot + slot * 0.15, y: base - h, width: slot * 0.7, height: h, rx: 2,
                                   "class": "bar", "data-label": item.label, "data-value": item.value});
        bar.appendChild(svgNode("title", {}, item.label + ": " + options.format(item.value)));
        svg.appendChild(bar);
      }
      if ((items.length - 1 - i) % every === 0) {  // labelled back from the last, which ends at the edge
        var last = i === items.length - 1;
        svg.appendChild(svgNode("text", {x: last ? width : i * slot + slot / 2, y: 174,
                                         "text-anchor": last ? "end" : "middle"}, item.label.slice(5)));
      }
    });
  }

  function horizontalBars(svg, items, peak, width, options) {
    var labelWidth = Math.min(200, Math.round(width * 0.32)), valueWidth = 90, span = width - labelWidth - valueWidth;
    svg.setAttribute("data-span", span);
    if (!items.length) svg.appendChild(svgNode("text", {x: 0, y: 24}, "No calls in this range."));
    items.forEach(function (item, i) {
      var y = 4 + i * 28;
      svg.appendChild(svgNode("text", {x: 0, y: y + 16}, shorten(item.label, Math.floor(labelWidth / 8))));
      var w = peak ? Math.max(item.value ? 2 : 0, item.value / peak * span) : 0;
      var bar = svgNode("rect", {x: labelWidth, y: y + 3, width: w, height: 18, rx: 2, "class": "bar",
                                 "data-label": item.label, "data-value": item.value});
      bar.appendChild(svgNode("title", {}, item.label + ": " + options.format(item.value)));
      svg.appendChild(bar);
      svg.appendChild(svgNode("text", {x: labelWidth + w + 6, y: y + 16}, options.format(item.value)));
    });
  }

  function shorten(text, length) {
    return text.length > length ? text.slice(0, length - 1) + "\u2026" : text;
  }

  /* Each active key with a daily token limit or a monthly budget: what it used today and this month
     (as /v1/key/info counts them: UTC day and month), and what is left. */
  function loadBudgets() {
    var limited = keys.filter(function (key) {
      return key.status === "active" && (key.limits.daily_tokens || key.limits.monthly_budget_usd !== null);
    });
    el.budgetList.textContent = "";
    if (!limited.length) {
      el.budgetsStatus.textContent = "No active key has a daily token limit or a monthly budget.";
      return;
    }
    var day = today();
    Promise.all([usage("key", day, day), usage("key", day.slice(0, 8) + "01", day)]).then(function (sums) {
      el.budgetsStatus.textContent = "";
      var todays = bySomeKey(sums[0]), months = bySomeKey(sums[1]);
      limited.forEach(function (key) {
        var item = document.createElement("li");
        item.setAttribute("data-key-id", key.id);
        var heading = document.createElement("h3");
        heading.textContent = key.name;
        item.appendChild(heading);
        if (key.limits.daily_tokens) {
          var used = (todays[key.id] || {}).total_tokens || 0;
          item.appendChild(gauge("Tokens today", used, key.limits.daily_tokens, count));
        }
        if (key.limits.monthly_budget_usd !== null) {
          var spent = (months[key.id] || {}).cost_usd || 0;
          item.appendChild(gauge("Spend this month", spent, key.limits.monthly_budget_usd, usd));
        }
        el.budgetList.appendChild(item);
      });
    }).catch(report);
  }

  function bySomeKey(rows) {
    var map = {};
    rows.forEach(function (row) { map[row.key] = row; });
    return map;
  }

  function gauge(label, used, limit, format) {
    var wrap = document.createElement("div");
    wrap.className = "gauge";
    var text = document.createElement("p");
    var left = Math.max(0, limit - used);
    text.textContent = label + ": " + format(used) + " of " + format(limit) + " used \u00b7 " + format(left) + " left";
    var meter = document.createElement("meter");
    meter.min = 0;
    meter.max = limit || 1;
    meter.value = Math.min(used, limit);
    meter.high = limit * 0.8;
    meter.optimum = 0;
    meter.setAttribute("aria-label", label);
    meter.textContent = text.textContent;
    wrap.appendChild(text);
    wrap.appendChild(meter);
    return wrap;
  }

  // --- deployments' health ---------------------------------------------------------------------------

  function loadHealth() {
    if (!adminKey) return;
    el.healthStatus.textContent = "Loading\u2026";
    api("/admin/upstreams").then(function (body) {
      var rows = el.healthTable.tBodies[0];
      rows.textContent = "";
      body.upstreams.forEach(function (up) {
        var row = rows.insertRow();
        row.setAttribute("data-upstream", up.upstream);
        cell(row, up.upstream, "th").scope = "row";
        cell(row, (up.served_as || []).join(", "));
        var state = cell(row, "");
        state.appendChild(badge(up.state, up.state === "healthy" ? "ok" : up.state === "cooling" ? "bad" : "warn"));
        if (up.cooldown_ends_at) {
          state.appendChild(document.createTextNode(" until " + when(new Date(up.cooldown_ends_at * 1000).toISOString())));
        }
        cell(row, count(up.consecutive_failures)).className = "num";
        cell(row, (up.recent_error_rate * 100).toFixed(0) + "%").className = "num";
        cell(row, up.latency_ms ? Math.round(up.latency_ms) + " ms" : "\u2014").className = "num";
        cell(row, count(up.requests_this_minute) + " req, " + count(up.tokens_this_minute) + " tokens");
      });
      el.healthStatus.textContent = body.upstreams.length ? "As of " + new Date().toISOString().slice(11, 19) + " UTC."
        : "No upstream is configured.";
    }).catch(function (error) {
      el.healthStatus.textContent = "";
      report(error);
    });
  }

  // --- the call log ----------------------------------------------------------------------------------

  function setupCalls() {
    el.callsForm.addEventListener("submit", function (event) {
      event.preventDefault();
      loadCalls(false);
    });
    el.callsForm.addEventListener("reset", function () { setTimeout(function () { loadCalls(false); }, 0); });
    el.callsMore.addEventListener("click", function () { loadCalls(true); });
    el.callsLimit.addEventListener("change", function () { loadCalls(false); });
  }

  function callsQuery() {
    var params = new URLSearchParams();
    ["calls-key", "calls-model", "calls-provider", "calls-status", "calls-request-id"].forEach(function (id) {
      var input = document.getElementById(id), value = input.value.trim();
      if (value) params.set(input.name, value);
    });
    ["calls-since", "calls-until"].forEach(function (id) {
      var input = document.getElementById(id);
      if (input.value) params.set(input.name, input.value + (input.value.length === 16 ? ":00Z" : "Z"));  // UTC
    });
    params.set("limit", el.callsLimit.value);
    return params;
  }

  function loadCalls(more) {
    var params = callsQuery();
    if (more && callsCursor) params.set("cursor", callsCursor);
    el.callsStatusLine.textContent = "Loading\u2026";
    api("/admin/calls?" + params.toString()).then(function (body) {
      var rows = el.callsTable.tBodies[0];
      if (!more) rows.textContent = "";
      body.data.forEach(function (call) { addCallRow(rows, call); });
      callsCursor = body.next_cursor;
      el.callsMore.hidden = !callsCursor;
      var shown = rows.rows.length;
      el.callsStatusLine.textContent = shown ? shown + (callsCursor ? " calls shown; more to load." : " calls.")
        : "No call matches.";
    }).catch(function (error) {
      el.callsStatusLine.textContent = error.status === 404 ? "This server keeps no call log." : "";
      if (error.status !== 404) report(error);
    });
  }

  function addCallRow(rows, call) {
    var row = rows.insertRow();
    row.setAttribute("data-call-id", call.id);
    var first = cell(row, "", "th");
    first.scope = "row";
    var open = document.createElement("button");
    open.type = "button";
    open.className = "link-button";
    open.textContent = when(call.created_at);
    open.setAttribute("aria-label", "Call at " + when(call.created_at) + ", details");
    open.addEventListener("click", function () { openCall(call.id); });
    first.appendChild(open);
    cell(row, call.key_name || keyName(call.key_id));
    cell(row, call.model || call.requested_model);
    cell(row, "").appendChild(badge(statusText(call.status, call.error_type),
                                    call.status < 400 && !call.error_type ? "ok" : "bad"));
    cell(row, ms(call.latency_ms)).className = "num";
    cell(row, count((call.prompt_tokens || 0) + (call.completion_tokens || 0))).className = "num";
    cell(row, usd(call.cost_usd || 0)).className = "num";
  }

  function openCall(id) {
    el.callStatus.textContent = "Loading\u2026";
    el.callFacts.textContent = "";
    el.callTimeline.textContent = "";
    el.callAttempts.textContent = "";
    el.callPayloads.hidden = true;
    el.callNoPayload.hidden = true;
    if (!el.callDialog.open) el.callDialog.showModal();
    el.callTitle.focus();  // read first; the dialog's first control is far below
    api("/admin/calls/" + encodeURIComponent(id)).then(function (call) {
      el.callStatus.textContent = "";
      el.callTitle.textContent = "Call " + call.request_id;
      fillFacts(call);
      el.callTimeline.appendChild(timeline(call));
      fillAttempts(call.attempts || []);
      if (call.payload) {
        el.callRequest.textContent = payloadText(call.payload.request);
        el.callResponse.textContent = payloadText(call.payload.response);
        el.callPayloads.hidden = false;
      } else {
        el.callNoPayload.hidden = false;
      }
    }).catch(function (error) {
      el.callStatus.textContent = "Could not load the call: " + error.message;
    });
  }

  /* A kept body: its JSON indented, or its text as kept (a stream's events, a body cut to size). */
  function payloadText(body) {
    if (body === null || body === undefined) return "(none)";
    return typeof body === "string" ? body : JSON.stringify(body, null, 2);
  }

  function statusText(status, errorType) {
    return (status === null || status === undefined ? "no status" : String(status)) + (errorType ? " " + errorType : "");
  }

  function fillFacts(call) {
    var facts = [
      ["Request id", call.request_id], ["Time (UTC)", when(call.created_at)],
      ["Key", (call.key_name || keyName(call.key_id)) + (call.key_id ? " (" + call.key_id + ")" : "")],
      ["Client / user", (call.client_id || "\u2014") + " / " + (call.user_id || "\u2014")],
      ["Front door", call.front_door], ["Requested model", call.requested_model],
      ["Answered by", [call.provider, call.model].filter(Boolean).join("/") +
                      (call.deployment ? " (" + call.deployment + ")" : "")],
      ["Status", statusText(call.status, call.error_type)],
      ["Latency", ms(call.latency_ms)], ["Time to first token", call.ttft_ms === null ? "\u2014" : ms(call.ttft_ms)],
      ["Tokens", "prompt " + count(call.prompt_tokens || 0) + " (cached " + count(call.cached_tokens || 0) +
                 "), completion " + count(call.completion_tokens || 0) + " (reasoning " +
                 count(call.reasoning_tokens || 0) + ")"],
      ["Cost", usd(call.cost_usd || 0)], ["Streamed", call.streamed ? "yes" : "no"],
      ["Fallbacks", count(call.fallbacks || 0)]];
    facts.forEach(function (pair) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = pair[0];
      dd.textContent = pair[1] === null || pair[1] === undefined || pair[1] === "" ? "\u2014" : pair[1];
      el.callFacts.appendChild(dt);
      el.callFacts.appendChild(dd);
    });
  }

  /* The attempts on one time axis: a bar per attempt from its start (offset_ms) for its duration. */
  function timeline(call) {
    var attempts = call.attempts || [];
    var end = attempts.reduce(function (max, a) { return Math.max(max, a.offset_ms + a.duration_ms); },
                              call.latency_ms || 0) || 1;
    var width = Math.max(280, Math.round(el.callTimeline.clientWidth || 560));
    var labelWidth = Math.min(180, Math.round(width * 0.35)), span = width - labelWidth - 10;
    var height = attempts.length * 30 + 26;
    var svg = svgNode("svg", {viewBox: "0 0 " + width + " " + height, role: "img", "class": "chart-svg timeline",
                              "aria-labelledby": "timeline-title timeline-desc"});
    svg.appendChild(svgNode("title", {id: "timeline-title"}, "Attempts on a timeline"));
    svg.appendChild(svgNode("desc", {id: "timeline-desc"}, attempts.length + " attempt(s) over " + ms(end) +
                            "; the table that follows has each one's start, duration and status."));
    attempts.forEach(function (a, i) {
      var y = i * 30;
      svg.appendChild(svgNode("text", {x: 0, y: y + 17}, shorten((i + 1) + ". " + (a.deployment || a.provider + "/" + a.model),
                                                                   Math.floor(labelWidth / 8))));
      var bar = svgNode("rect", {x: labelWidth + a.offset_ms / end * span, y: y + 4, rx: 2, height: 18,
                                 width: Math.max(2, a.duration_ms / end * span),
                                 "class": "bar " + (a.error_type ? "failed" : "ok"), "data-attempt": i + 1});
      bar.appendChild(svgNode("title", {}, "Attempt " + (i + 1) + ": " + ms(a.offset_ms) + " to " +
                                           ms(a.offset_ms + a.duration_ms) + ", " + statusText(a.status, a.error_type)));
      svg.appendChild(bar);
    });
    var axis = attempts.length * 30 + 4;
    svg.appendChild(svgNode("line", {x1: labelWidth, x2: labelWidth + span, y1: axis, y2: axis, "class": "axis"}));
    svg.appendChild(svgNode("text", {x: labelWidth, y: axis + 18}, "0 ms"));
    svg.appendChild(svgNode("text", {x: labelWidth + span, y: axis + 18, "text-anchor": "end"}, ms(end)));
    return svg;
  }

  function fillAttempts(attempts) {
    var table = el.callAttempts;
    table.createCaption().textContent = "Attempts";
    var head = table.createTHead().insertRow();
    ["#", "Deployment", "Model", "Start", "Duration", "Status"].forEach(function (label) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = label;
      head.appendChild(th);
    });
    var body = table.createTBody();
    attempts.forEach(function (a, i) {
      var row = body.insertRow();
      cell(row, String(i + 1), "th").scope = "row";
      cell(row, a.deployment || "\u2014");
      cell(row, a.provider + "/" + a.model);
      cell(row, ms(a.offset_ms)).className = "num";
      cell(row, ms(a.duration_ms)).className = "num";
      cell(row, statusText(a.status, a.error_type));
    });
  }

  // --- small helpers ------------------------------------------------------------------------------------

  function setupTheme() {
    function sync() {
      var active = applyTheme();
      el.themeToggle.setAttribute("aria-pressed", active === "dark" ? "true" : "false");
      el.themeToggle.title = active === "dark" ? "Switch to light mode" : "Switch to dark mode";
    }
    el.themeToggle.addEventListener("click", function () {
      try { localStorage.setItem(THEME_KEY, root.getAttribute("data-theme-active") === "dark" ? "light" : "dark"); }
      catch (e) { root.setAttribute("data-theme-active", root.getAttribute("data-theme-active") === "dark" ? "light" : "dark"); }
      sync();
    });
    if (systemDark && systemDark.addEventListener) systemDark.addEventListener("change", sync);
    sync();
  }

  function cell(row, text, tag) {
    var node = document.createElement(tag || "td");
    node.textContent = text;
    row.appendChild(node);
    return node;
  }

  function badge(text, kind) {
    var node = document.createElement("span");
    node.className = "badge " + kind;
    node.textContent = text;
    return node;
  }

  function svgNode(name, attributes, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function usdExact(amount) { return "$" + Number(amount).toFixed(6); }

  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "\u2014"; }

  function ms(value) { return value === null || value === undefined ? "\u2014" : count(Math.round(value)) + " ms"; }

  function count(n) { return Number(n).toLocaleString("en-US"); }

  /* Dollars: cents from one cent up, else up to six decimals (a call to a small model costs less). */
  function usd(amount) {
    var value = Number(amount);
    if (value === 0) return "$0.00";
    if (value >= 0.01) return "$" + value.toFixed(2);
    if (value < 0.0000005) return "<$0.000001";
    return "$" + value.toFixed(6).replace(/0+$/, "");
  }
}());
