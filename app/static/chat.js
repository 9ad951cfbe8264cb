/* The web chat at /ui: plain JavaScript, talking only to this server, every call through `api()`.
 *
 *   POST /chat {"message", "chat_id", "model", "replace", "stream": true}  server-sent events, read with
 *        fetch + ReadableStream: start, fallback, delta (text), done / error (both carry chat_id);
 *        message is a string, or content parts with images as data: URLs
 *   GET /chat/history?limit&cursor, GET /chat/search?q&limit&cursor   the sidebar, newest first, paged
 *   GET /chat/history/{id}, PATCH /chat/history/{id} {"title"}, DELETE /chat/delete/{id}
 *   GET /v1/models                      the model picker (aliases first)
 *   GET /v1/key/info, GET /usage?group_by=day&since&until&key_id   the usage panel
 *
 * Answers are Markdown: parsed by marked, sanitised by DOMPurify (every model-written HTML), code
 * highlighted by highlight.js; all three are vendored under /static/vendor (see `make vendor`).
 * Loaded in <head> so the saved theme applies before the first paint; the rest waits for the DOM.
 */
"use strict";

(function () {
  var THEME_KEY = "aiserver.theme";
  var API_KEY = "aiserver.key";
  var MODEL_KEY = "aiserver.model";           // the model of the next new chat
  var CHAT_MODELS_KEY = "aiserver.chatModels"; // chat id -> model chosen for it
  var CHAT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var PAGE_SIZE = 50;
  var SEARCH_PAGE = 20;
  var IMAGE_KEEP_BYTES = 300 * 1024;  // smaller images are sent as they are; larger ones are scaled down
  var IMAGE_MAX_SIDE = 1536;
  var root = document.documentElement;
  var systemDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  var memory = {};  // what localStorage would hold, when it is unavailable (private mode)

  function load(key) {
    try { var value = localStorage.getItem(key); return value === null ? (memory[key] || null) : value; }
    catch (e) { return memory[key] || null; }
  }

  function save(key, value) {
    memory[key] = value;
    try { if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value); }
    catch (e) { /* kept in memory for this page */ }
  }

  function applyTheme() {
    var chosen = load(THEME_KEY);
    if (chosen === "light" || chosen === "dark") root.setAttribute("data-theme", chosen);
    else root.removeAttribute("data-theme");
    var active = chosen === "light" || chosen === "dark" ? chosen : (systemDark && systemDark.matches ? "dark" : "light");
    root.setAttribute("data-theme-active", active);
    return active;
  }

  applyTheme();

  var state = {
    chatId: null,        // the open chat, or null for a new one not yet sent
    pendingId: null,     // custom id chosen for the next new chat
    cursor: null,        // next page of the sidebar (of the list or of the search)
    query: "",           // the sidebar's search text
    streaming: null,     // AbortController of the answer in progress
    editing: false,      // the composer holds the last message, to replace it
    pinned: true,        // the conversation is scrolled to its end (and follows the answer)
    attachments: [],     // data: URLs of the images of the next message
    chats: {}            // id -> summary, as listed
  };
  var el = {};

  document.addEventListener("DOMContentLoaded", function () {
    ["sidebar", "new-chat-form", "new-chat-id", "new-chat-hint", "search-form", "chat-search", "chat-list",
     "chats-title", "empty-list", "load-more", "key-button", "menu-button", "chat-title", "rename-form",
     "rename-input", "chat-meta", "model-select", "chat-menu", "rename-button", "export-md", "export-json",
     "theme-toggle", "messages", "welcome", "notice", "composer", "editing", "cancel-edit", "attachments",
     "image-input", "attach-button", "composer-input", "stop-button", "send-button", "key-dialog", "key-form",
     "key-reason", "key-input", "key-forget", "key-cancel", "usage-button", "usage-dialog", "usage-who",
     "usage-status", "usage-chart-section", "usage-chart", "usage-total", "usage-table", "usage-limits-section",
     "usage-limits"].forEach(function (id) {
      el[id.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); })] = document.getElementById(id);
    });
    setupMarkdown();
    setupTheme();
    setupComposer();
    setupSidebar();
    setupChatMenu();
    setupKeyDialog();
    el.usageButton.addEventListener("click", openUsage);
    el.modelSelect.addEventListener("change", rememberModel);
    window.addEventListener("hashchange", openFromHash);
    loadModels().then(function () { return loadChats(true); }).then(openFromHash);
  });

  // --- every call: the API key, and the key prompt on a 401 ---------------------------------------

  /* fetch() of this server with the stored key as `Authorization: Bearer`; a 401 opens the key
     prompt (with the server's message) and rejects like any other error. */
  function api(path, options) {
    options = options || {};
    var headers = Object.assign({"Accept": "application/json"}, options.headers || {});
    var key = load(API_KEY);
    if (key) headers["Authorization"] = "Bearer " + key;
    return fetch(path, Object.assign({}, options, {headers: headers})).then(function (response) {
      if (response.status !== 401) return response;
      return readJson(response).catch(function (error) {
        askForKey(key ? "The server refused this key: " + error.message : error.message);
        throw error;
      });
    });
  }

  function setupKeyDialog() {
    el.keyButton.addEventListener("click", function () { askForKey(null); });
    el.keyForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var key = el.keyInput.value.trim();
      if (!key) { el.keyInput.focus(); return; }
      save(API_KEY, key);
      el.keyDialog.close();
      reloadAll();
    });
    el.keyForget.addEventListener("click", forgetKey);
    el.keyCancel.addEventListener("click", function () { el.keyDialog.close(); });
  }

  function askForKey(reason) {
    el.keyReason.textContent = reason || "Calls to this server send this key. It is kept in this browser only.";
    el.keyInput.value = "";
    el.keyForget.hidden = !load(API_KEY);
    if (!el.keyDialog.open) el.keyDialog.showModal();
    el.keyInput.focus();
  }

  /* Forget the key and what it showed (its chats), then load again without it: a server that
     needs a key answers 401 and the prompt comes back. */
  function forgetKey() {
    save(API_KEY, null);
    el.keyInput.value = "";
    el.keyDialog.close();
    el.chatList.textContent = "";
    state.chats = {};
    startNewChat(null);
    reloadAll();
    showNotice("The key is forgotten: this browser no longer sends one.");
  }

  function reloadAll() {
    hideNotice();
    loadModels().then(function () { return loadChats(true); }).then(function () {
      if (state.chatId) openChat(state.chatId);
    });
  }

  // --- the usage panel: tokens and cost per day, the key's limits ------------------------------------

  var USAGE_DAYS = 14;
  var SVG_NS = "http://www.w3.org/2000/svg";

  /* Open the panel and fill it: the calling key (GET /v1/key/info), then its usage per UTC day
     (GET /usage) over the USAGE_DAYS days ending on the server's today. An admin key would see
     every key's usage, so the key's own id is asked for. */
  function openUsage() {
    closeSidebar();
    el.usageWho.textContent = "";
    el.usageStatus.textContent = "Loading\u2026";
    el.usageChartSection.hidden = true;
    el.usageLimitsSection.hidden = true;
    if (!el.usageDialog.open) el.usageDialog.showModal();
    api("/v1/key/info").then(readJson).then(function (info) {
      var until = info.usage ? info.usage.as_of.slice(0, 10) : new Date().toISOString().slice(0, 10);
      var query = "/usage?group_by=day&since=" + addDays(until, 1 - USAGE_DAYS) + "&until=" + until +
        (info.key ? "&key_id=" + encodeURIComponent(info.key.id) : "");
      return api(query).then(readJson).then(function (summary) { showUsage(info, summary); });
    }).catch(function (error) {
      if (error.status === 401) { el.usageDialog.close(); return; }  // the key prompt is open instead
      el.usageStatus.textContent = "Could not load the usage: " + error.message;
    });
  }

  function showUsage(info, summary) {
    var days = usageDays(summary.rows, summary.until);
    el.usageWho.textContent = info.key ? "Key \u201c" + info.key.name + "\u201d (" + info.key.hint + ")" +
      (info.key.admin ? ", admin" : "") : "No key";
    el.usageStatus.textContent = info.key ? "" : info.open
      ? "This server is open: it asks for no key, so no limits apply. The chart counts every call made to it."
      : "This browser sends no key, so there is nothing to count.";
    el.usageChart.textContent = "";
    el.usageChart.appendChild(usageChart(days));
    fillUsageTable(days);
    var totals = days.reduce(function (sum, day) {
      return {calls: sum.calls + day.calls, tokens: sum.tokens + day.total_tokens, cost: sum.cost + day.cost_usd};
    }, {calls: 0, tokens: 0, cost: 0});
    el.usageTotal.textContent = totals.calls ? count(totals.tokens) + " tokens, " + usd(totals.cost) + ", " +
      count(totals.calls) + (totals.calls === 1 ? " call" : " calls") + " in " + USAGE_DAYS + " days."
      : "No calls in the last " + USAGE_DAYS + " days.";
    el.usageChartSection.hidden = false;
    if (info.key) fillLimits(info.key, info.usage);
    el.usageLimitsSection.hidden = !info.key;
  }

  /* One entry per day, oldest first, ending on `until` (YYYY-MM-DD, UTC); days without calls are zeros. */
  function usageDays(rows, until) {
    var byDay = {};
    rows.forEach(function (row) { byDay[row.day] = row; });
    var days = [];
    for (var back = USAGE_DAYS - 1; back >= 0; back--) {
      var day = addDays(until, -back);
      days.push(Object.assign({day: day, calls: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0,
                               cost_usd: 0}, byDay[day] || {}));
    }
    return days;
  }

  function addDays(isoDay, n) {
    var date = new Date(isoDay + "T00:00:00Z");
    date.setUTCDate(date.getUTCDate() + n);
    return date.toISOString().slice(0, 10);
  }

  /* The tokens per day as an SVG bar chart (one bar per day with calls, each with its figures as a
     tooltip), described by its <title> and <desc>; the same figures are in the hidden table. */
  function usageChart(days) {
    var width = 560, top = 22, base = 150, slot = width / days.length;
    var peak = Math.max.apply(null, days.map(function (day) { return day.total_tokens; }));
    var busiest = days.filter(function (day) { return day.total_tokens === peak; })[0];
    var svg = svgNode("svg", {viewBox: "0 0 " + width + " 174", role: "img",
                              "aria-labelledby": "usage-svg-title usage-svg-desc"});
    svg.appendChild(svgNode("title", {id: "usage-svg-title"}, "Tokens per day, last " + days.length + " days"));
    svg.appendChild(svgNode("desc", {id: "usage-svg-desc"}, peak
      ? "From " + days[0].day + " to " + days[days.length - 1].day + "; the busiest day, " + busiest.day + ", had " +
        count(peak) + " tokens. The table that follows has every day's figures."
      : "No calls from " + days[0].day + " to " + days[days.length - 1].day + "."));
    if (peak) svg.appendChild(svgNode("text", {x: 0, y: 13}, "peak " + count(peak) + " tokens"));
    svg.appendChild(svgNode("line", {x1: 0, x2: width, y1: base + 0.5, y2: base + 0.5, "class": "axis"}));
    days.forEach(function (day, i) {
      var x = i * slot;
      if (day.total_tokens) {
        var height = Math.max(2, day.total_tokens / peak * (base - top));
        var bar = svgNode("rect", {x: x + slot * 0.18, y: base - height, width: slot * 0.64, height: height, rx: 3,
                                   "class": "bar", "data-day": day.day});
        bar.appendChild(svgNode("title", {}, dayLabel(day.day, true) + ": " + count(day.total_tokens) + " tokens, " +
                                             usd(day.cost_usd) + ", " + count(day.calls) + " calls"));
        svg.appendChild(bar);
      }
      if ((days.length - 1 - i) % 2) return;  // every other day is labelled, ending on the last
      svg.appendChild(svgNode("text", {x: x + slot / 2, y: 168, "text-anchor": "middle"},
                              dayLabel(day.day, i < 2 || day.day.slice(8, 10) <= "02")));
    });
    return svg;
  }

  function svgNode(name, attributes, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function dayLabel(isoDay, withMonth) {
    var date = new Date(isoDay + "T00:00:00Z");
    return withMonth ? date.toLocaleDateString(undefined, {month: "short", day: "numeric", timeZone: "UTC"})
      : String(date.getUTCDate());
  }

  function fillUsageTable(days) {
    var body = el.usageTable.tBodies[0];
    body.textContent = "";
    days.forEach(function (day) {
      var row = body.insertRow();
      var head = document.createElement("th");
      head.scope = "row";
      head.textContent = day.day;
      row.appendChild(head);
      [count(day.calls), count(day.prompt_tokens), count(day.completion_tokens), count(day.total_tokens),
       Number(day.cost_usd).toFixed(6)].forEach(function (text) { row.insertCell().textContent = text; });
    });
  }

  /* The key's limits and what is left of them (`usage` of /v1/key/info). */
  function fillLimits(key, left) {
    var limits = key.limits;
    var items = [
      ["Tokens today", limits.daily_tokens
        ? count(left.tokens_today) + " of " + count(limits.daily_tokens) + " used \u00b7 " + count(left.daily_tokens_left) + " left"
        : count(left.tokens_today) + " used \u00b7 no daily limit"],
      ["This month", usd(left.cost_this_month_usd) + (limits.monthly_budget_usd !== null
        ? " of " + usd(limits.monthly_budget_usd) + " used \u00b7 " + usd(left.monthly_budget_left_usd) + " left"
        : " used \u00b7 no budget") + " (" + count(left.tokens_this_month) + " tokens)"],
      ["Prompt cache this month", count(left.cached_read_tokens_this_month) + " prompt tokens read \u00b7 " +
        count(left.cache_write_tokens_this_month) + " written (at the cached rates)"],
      ["Requests per minute", limits.rpm ? count(limits.rpm) : "no limit"],
      ["Tokens per minute", limits.tpm ? count(limits.tpm) : "no limit"],
      ["Models", key.models ? key.models.join(", ") : "all"]
    ];
    if (key.expires_at) items.push(["Expires", new Date(key.expires_at).toLocaleString()]);
    el.usageLimits.textContent = "";
    items.forEach(function (item) {
      var term = document.createElement("dt");
      term.textContent = item[0];
      var value = document.createElement("dd");
      value.textContent = item[1];
      el.usageLimits.append(term, value);
    });
  }

  function count(n) { return Number(n).toLocaleString(); }

  /* Dollars: cents from one cent up, else up to six decimals (a call to a small model costs less). */
  function usd(amount) {
    var value = Number(amount);
    if (value === 0) return "$0.00";
    if (value >= 0.01) return "$" + value.toFixed(2);
    if (value < 0.0000005) return "<$0.000001";
    return "$" + value.toFixed(6).replace(/0+$/, "");
  }

  // --- Markdown ---------------------------------------------------------------------------------------

  /* Math is left as the model wrote it ($...$, $$...$$, \(...\), \[...\]): marked would otherwise
     eat its backslashes and read its underscores as emphasis. */
  var MATH_BLOCK = /^\$\$([\s\S]+?)\$\$(?:\n|$)|^\\\[([\s\S]+?)\\\](?:\n|$)/;
  var MATH_INLINE = /^\$(?!\s)([^$\n]+?)\$(?!\d)|^\\\(([\s\S]+?)\\\)/;

  function setupMarkdown() {
    if (!window.marked || !window.DOMPurify) return;
    marked.use({gfm: true, breaks: false, extensions: [
      {name: "mathBlock", level: "block", start: function (src) { var i = src.search(/\$\$|\\\[/); return i < 0 ? undefined : i; },
       tokenizer: function (src) { var m = MATH_BLOCK.exec(src); if (m) return {type: "mathBlock", raw: m[0]}; },
       renderer: function (token) { return '<p class="math">' + escapeHtml(token.raw.trim()) + "</p>"; }},
      {name: "mathInline", level: "inline", start: function (src) { var i = src.search(/\$|\\\(/); return i < 0 ? undefined : i; },
       tokenizer: function (src) { var m = MATH_INLINE.exec(src); if (m) return {type: "mathInline", raw: m[0]}; },
       renderer: function (token) { return '<span class="math">' + escapeHtml(token.raw) + "</span>"; }}
    ]});
    DOMPurify.addHook("afterSanitizeAttributes", function (node) {
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
    if (window.hljs) hljs.configure({ignoreUnescapedHTML: true});
  }

  /* The answer's HTML: Markdown parsed, then sanitised (no script, no event handler, no javascript:
     URL, no style, no form survive). Without the libraries, the text as it is. */
  function markdownHtml(text) {
    if (!window.marked || !window.DOMPurify) return escapeHtml(text).replace(/\n/g, "<br>");
    return DOMPurify.sanitize(marked.parse(text), {FORBID_TAGS: ["style", "form", "input", "button", "textarea"],
                                                   FORBID_ATTR: ["style"]});
  }

  /* Render `text` into `target` without flicker: only the top-level blocks whose HTML changed are
     replaced (while streaming that is usually the last one), so earlier blocks, their highlighting
     and any selection in them stay as they are. */
  function renderMarkdown(target, text) {
    var scratch = document.createElement("div");
    scratch.innerHTML = markdownHtml(text);
    var fresh = Array.prototype.slice.call(scratch.childNodes);
    fresh.forEach(function (node, index) {
      var source = node.nodeType === 1 ? node.outerHTML : node.textContent;
      var old = target.childNodes[index];
      if (old && old.__source === source) return;
      var shown = node.nodeType === 1 ? decorate(node) : node;
      shown.__source = source;
      if (old) target.replaceChild(shown, old); else target.appendChild(shown);
    });
    while (target.childNodes.length > fresh.length) target.removeChild(target.lastChild);
  }

  /* The block as shown: code highlighted with a copy button, tables in a scrolling wrapper. */
  function decorate(block) {
    var blocks = block.matches("pre") ? [block] : block.querySelectorAll("pre");
    Array.prototype.forEach.call(blocks, function (pre) {
      var code = pre.querySelector("code");
      if (!code) return;
      if (window.hljs) hljs.highlightElement(code);
      pre.classList.add("code-block");
      var copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy-code";
      copy.textContent = "Copy";
      copy.setAttribute("aria-label", "Copy the code");
      copy.addEventListener("click", function () {
        copyText(code.textContent).then(function () { flash(copy, "Copied"); },
                                        function () { flash(copy, "Copy failed"); });
      });
      pre.insertBefore(copy, pre.firstChild);
    });
    Array.prototype.forEach.call(block.querySelectorAll("table"), function (table) {
      table.parentNode.insertBefore(tableWrap(), table).appendChild(table);
    });
    return block.matches("table") ? tableWrap().appendChild(block).parentNode : block;
  }

  function tableWrap() {
    var wrap = document.createElement("div");
    wrap.className = "table-wrap";
    return wrap;
  }

  /* The clipboard API needs a secure context (https or localhost); on plain http the older
     execCommand("copy") still works. */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  function flash(button, text) {
    var before = button.textContent;
    button.textContent = text;
    setTimeout(function () { button.textContent = before; }, 1500);
  }

  // --- theme -------------------------------------------------------------------------------------

  function setupTheme() {
    function sync() {
      var active = applyTheme();
      el.themeToggle.setAttribute("aria-pressed", active === "dark" ? "true" : "false");
      el.themeToggle.title = active === "dark" ? "Switch to light mode" : "Switch to dark mode";
    }
    el.themeToggle.addEventListener("click", function () {
      save(THEME_KEY, root.getAttribute("data-theme-active") === "dark" ? "light" : "dark");
      sync();
    });
    if (systemDark && systemDark.addEventListener) systemDark.addEventListener("change", sync);
    sync();
  }

  // --- models --------------------------------------------------------------------------------------

  /* The picker: the server's default, then the aliases (ids without a "/"), then every provider's
     models ("provider/model"), each group as /v1/models lists it. */
  function loadModels() {
    return api("/v1/models").then(readJson).then(function (body) {
      var models = (body.data || []).filter(function (m) { return m.mode !== "embedding"; })
        .map(function (m) { return m.id; });
      var aliases = models.filter(function (id) { return id.indexOf("/") < 0; });
      var named = models.filter(function (id) { return id.indexOf("/") >= 0; });
      el.modelSelect.textContent = "";
      el.modelSelect.appendChild(option("", "Default model"));
      if (aliases.length) el.modelSelect.appendChild(group("Aliases", aliases));
      if (named.length) el.modelSelect.appendChild(group("Models", named));
      selectModel(modelOf(state.chatId));
    }).catch(function (error) {
      if (error.status !== 401) showNotice("Could not list the models (" + error.message + "); the default model still answers.");
    });
  }

  function option(value, label) {
    var node = document.createElement("option");
    node.value = value;
    node.textContent = label;
    return node;
  }

  function group(label, ids) {
    var node = document.createElement("optgroup");
    node.label = label;
    ids.forEach(function (id) { node.appendChild(option(id, id)); });
    return node;
  }

  function chatModels() {
    try { return JSON.parse(load(CHAT_MODELS_KEY) || "{}") || {}; } catch (e) { return {}; }
  }

  function modelOf(chatId) {
    var chosen = chatId ? chatModels()[chatId] : undefined;
    return chosen !== undefined ? chosen : (load(MODEL_KEY) || "");
  }

  function selectModel(model) {
    var known = Array.prototype.some.call(el.modelSelect.options, function (o) { return o.value === model; });
    el.modelSelect.value = known ? model : "";
  }

  function rememberModel() {
    save(MODEL_KEY, el.modelSelect.value);
    if (state.chatId) rememberChatModel(state.chatId, el.modelSelect.value);
  }

  function rememberChatModel(chatId, model) {
    var all = chatModels();
    all[chatId] = model;
    save(CHAT_MODELS_KEY, JSON.stringify(all));
  }

  function forgetChatModel(chatId) {
    var all = chatModels();
    delete all[chatId];
    save(CHAT_MODELS_KEY, JSON.stringify(all));
  }

  // --- sidebar: the list and the search ------------------------------------------------------------------

  function setupSidebar() {
    el.newChatForm.addEventListener("submit", onNewChat);
    el.newChatId.addEventListener("input", function () { validateNewId(false); });
    el.loadMore.addEventListener("click", function () { loadChats(false); });
    el.menuButton.addEventListener("click", function (event) { event.stopPropagation(); toggleSidebar(); });
    document.querySelector(".main").addEventListener("click", closeSidebar);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { closeSidebar(); el.chatMenu.open = false; }
    });
    var timer = null;
    el.chatSearch.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.query = el.chatSearch.value.trim(); loadChats(true); }, 250);
    });
    el.searchForm.addEventListener("submit", function (event) {
      event.preventDefault();
      clearTimeout(timer);
      state.query = el.chatSearch.value.trim();
      loadChats(true);
    });
  }

  function loadChats(reset) {
    var searching = !!state.query;
    var url = searching ? "/chat/search?q=" + encodeURIComponent(state.query) + "&limit=" + SEARCH_PAGE
      : "/chat/history?limit=" + PAGE_SIZE;
    if (!reset && state.cursor) url += "&cursor=" + encodeURIComponent(state.cursor);
    return api(url).then(readJson).then(function (body) {
      if (reset) { el.chatList.textContent = ""; state.chats = {}; }
      Object.keys(body.chats).forEach(function (id) {
        state.chats[id] = body.chats[id];
        el.chatList.appendChild(chatItem(id, body.chats[id]));
      });
      state.cursor = body.next_cursor;
      el.chatsTitle.textContent = searching ? "Chats with \u201c" + state.query + "\u201d" : "Recent chats";
      el.emptyList.textContent = searching ? "No chat has \u201c" + state.query + "\u201d." : "No chats yet.";
      el.loadMore.hidden = !state.cursor;
      el.emptyList.hidden = el.chatList.children.length > 0;
      markActive();
    }).catch(function (error) {
      if (error.status !== 401) showNotice("Could not load the chat list: " + error.message);
    });
  }

  function chatItem(id, summary) {
    var item = document.createElement("li");
    item.className = "chat-item";
    item.dataset.chatId = id;

    var open = document.createElement("button");
    open.type = "button";
    open.className = "chat-open";
    var name = document.createElement("span");
    name.className = "chat-name";
    name.textContent = summary.title || id;
    var sub = document.createElement("span");
    sub.className = "chat-sub";
    sub.textContent = summary.match ? summary.match
      : (summary.title ? id + " · " : "") + relativeTime(summary.last_updated);
    open.append(name, sub);
    open.addEventListener("click", function () { location.hash = "chat=" + encodeURIComponent(id); closeSidebar(); });

    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "chat-delete";
    remove.setAttribute("aria-label", "Delete chat " + (summary.title || id));
    remove.title = "Delete chat";
    remove.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M10 11v6M14 11v6M6 7l1 12a2 2 0 0 0 2 2h6a2 2 0 0 0 2-2l1-12M9 7V4h6v3"/></svg>';
    remove.addEventListener("click", function () { deleteChat(id, summary.title || id); });

    item.append(open, remove);
    return item;
  }

  function upsertChat(id, summary) {
    var existing = el.chatList.querySelector('[data-chat-id="' + cssEscape(id) + '"]');
    if (existing) existing.remove();
    state.chats[id] = summary;
    if (!state.query) el.chatList.insertBefore(chatItem(id, summary), el.chatList.firstChild);
    el.emptyList.hidden = el.chatList.children.length > 0;
    markActive();
  }

  function markActive() {
    Array.prototype.forEach.call(el.chatList.children, function (item) {
      var active = item.dataset.chatId === state.chatId;
      item.classList.toggle("active", active);
      item.querySelector(".chat-open").setAttribute("aria-current", active ? "true" : "false");
    });
  }

  function deleteChat(id, label) {
    if (!window.confirm('Delete the chat "' + label + '"? This cannot be undone.')) return;
    api("/chat/delete/" + encodeURIComponent(id), {method: "DELETE"}).then(readJson).then(function () {
      var item = el.chatList.querySelector('[data-chat-id="' + cssEscape(id) + '"]');
      if (item) item.remove();
      delete state.chats[id];
      forgetChatModel(id);
      el.emptyList.hidden = el.chatList.children.length > 0;
      if (state.chatId === id) startNewChat(null);
    }).catch(function (error) { showNotice("Could not delete the chat: " + error.message); });
  }

  function toggleSidebar(force) {
    var open = force === undefined ? !el.sidebar.classList.contains("open") : force;
    el.sidebar.classList.toggle("open", open);
    el.menuButton.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function closeSidebar() { toggleSidebar(false); }

  // --- the open chat: rename and export -------------------------------------------------------------

  function setupChatMenu() {
    el.renameButton.addEventListener("click", function () { el.chatMenu.open = false; startRename(); });
    el.exportMd.addEventListener("click", function () { el.chatMenu.open = false; exportChat("md"); });
    el.exportJson.addEventListener("click", function () { el.chatMenu.open = false; exportChat("json"); });
    el.renameForm.addEventListener("submit", function (event) { event.preventDefault(); finishRename(true); });
    el.renameInput.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.stopPropagation(); finishRename(false); }
    });
    el.renameInput.addEventListener("blur", function () { if (!el.renameForm.hidden) finishRename(true); });
    syncChatMenu();
  }

  function syncChatMenu() {
    el.chatMenu.hidden = !state.chatId;
  }

  function startRename() {
    if (!state.chatId) return;
    el.renameInput.value = el.chatTitle.textContent;
    el.chatTitle.hidden = true;
    el.renameForm.hidden = false;
    el.renameInput.focus();
    el.renameInput.select();
  }

  function finishRename(keep) {
    var title = el.renameInput.value.trim();
    var id = state.chatId;
    el.renameForm.hidden = true;
    el.chatTitle.hidden = false;
    if (!keep || !id || !title || title === el.chatTitle.textContent) return;
    api("/chat/history/" + encodeURIComponent(id), {method: "PATCH", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify({title: title})})
      .then(readJson).then(function (body) {
        el.chatTitle.textContent = body.title;
        upsertChat(id, Object.assign({}, state.chats[id] || {}, {title: body.title, match: undefined}));
      }).catch(function (error) { showNotice("Could not rename the chat: " + error.message); });
  }

  function exportChat(format) {
    var id = state.chatId;
    if (!id) return;
    api("/chat/history/" + encodeURIComponent(id)).then(readJson).then(function (body) {
      var chat = Object.assign({chat_id: id}, body.history);
      var text = format === "json" ? JSON.stringify(chat, null, 2) + "\n" : chatMarkdown(chat);
      download(id + (format === "json" ? ".json" : ".md"), text,
               format === "json" ? "application/json" : "text/markdown");
    }).catch(function (error) { showNotice("Could not export the chat: " + error.message); });
  }

  function chatMarkdown(chat) {
    var out = ["# " + (chat.title || chat.chat_id), "",
               "Chat `" + chat.chat_id + "`, started " + chat.created_at + ", updated " + chat.last_updated + ".", ""];
    chat.messages.forEach(function (m) {
      var who = m.role === "user" ? "You" : m.role === "system" ? "System prompt" : "Assistant";
      if (m.role === "assistant" && m.model) who += " (" + [m.provider, m.model].filter(Boolean).join(" · ") + ")";
      out.push("## " + who, "", m.content);
      (m.images || []).forEach(function (url, i) { out.push("", "![image " + (i + 1) + "](" + url + ")"); });
      if (m.status && m.status !== "complete") out.push("", "_" + (m.status === "partial" ? "Stopped before the end" : "Error: " + (m.error || "")) + "_");
      out.push("");
    });
    return out.join("\n");
  }

  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], {type: type + ";charset=utf-8"}));
    var link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // --- opening and starting chats ----------------------------------------------------------------------

  function openFromHash() {
    var match = /^#chat=(.+)$/.exec(location.hash);
    var id = match ? decodeURIComponent(match[1]) : null;
    if (id && CHAT_ID_RE.test(id)) {
      if (id !== state.chatId) openChat(id);
    } else if (state.chatId && !state.streaming) {
      startNewChat(null);
    }
  }

  function openChat(id) {
    if (state.streaming) state.streaming.abort();
    hideNotice();
    return api("/chat/history/" + encodeURIComponent(id)).then(readJson).then(function (body) {
      state.chatId = id;
      state.pendingId = null;
      cancelEdit();
      clearMessages();
      body.history.messages.forEach(renderStored);
      setHeading(id, body.history);
      selectModel(modelOf(id));
      markActive();
      syncChatMenu();
      updateActions();
      scrollToEnd(true);
      el.composerInput.focus();
    }).catch(function (error) {
      if (error.status === 401) return;
      showNotice(error.status === 404 ? "That chat no longer exists." : "Could not open the chat: " + error.message);
      if (error.status === 404) startNewChat(null);
    });
  }

  function startNewChat(customId) {
    if (state.streaming) state.streaming.abort();
    state.chatId = null;
    state.pendingId = customId;
    cancelEdit();
    clearMessages();
    el.messages.appendChild(el.welcome);
    el.chatTitle.textContent = customId ? customId : "New chat";
    el.chatMeta.textContent = customId ? "A new chat with this id starts with your first message."
      : "Your messages are saved on this server.";
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    selectModel(load(MODEL_KEY) || "");
    markActive();
    syncChatMenu();
    el.composerInput.focus();
  }

  function onNewChat(event) {
    event.preventDefault();
    if (!validateNewId(true)) return;
    var id = el.newChatId.value.trim();
    el.newChatId.value = "";
    closeSidebar();
    if (id && state.chats[id]) { location.hash = "chat=" + encodeURIComponent(id); return; }
    startNewChat(id || null);
  }

  function validateNewId(report) {
    var id = el.newChatId.value.trim();
    var ok = !id || CHAT_ID_RE.test(id);
    el.newChatId.setAttribute("aria-invalid", ok ? "false" : "true");
    el.newChatHint.classList.toggle("error", !ok);
    el.newChatHint.textContent = ok ? "Letters, digits, - and _; up to 64. Empty: an id is made for you."
      : "Use 1 to 64 letters, digits, - or _ (no spaces).";
    if (!ok && report) el.newChatId.focus();
    return ok;
  }

  function setHeading(id, history) {
    var summary = state.chats[id] || {};
    el.chatTitle.textContent = history.title || summary.title || id;
    var count = history.message_count !== undefined ? history.message_count : summary.message_count;
    el.chatMeta.textContent = id + (count !== undefined ? " · " + count + " messages" : "") +
      (history.last_updated ? " · updated " + relativeTime(history.last_updated) : "");
  }

  // --- messages ----------------------------------------------------------------------------------------

  function clearMessages() {
    el.messages.textContent = "";
  }

  function renderStored(message) {
    if (message.role === "system") {
      var details = document.createElement("details");
      details.className = "system-prompt";
      var summary = document.createElement("summary");
      summary.textContent = "System prompt";
      var text = document.createElement("p");
      text.textContent = message.content;
      details.append(summary, text);
      el.messages.appendChild(details);
      return;
    }
    var node = message.role === "user" ? userNode(message.content, message.images || [])
      : answerNode({provider: message.provider, model: message.model});
    if (message.role === "assistant") setAnswerText(node, message.content);
    if (message.status && message.status !== "complete") setStatus(node, message.status, message.error);
    el.messages.appendChild(node);
  }

  function messageShell(role) {
    var wrap = document.createElement("div");
    wrap.className = "message " + role;
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    bubble.appendChild(who);
    wrap.appendChild(bubble);
    return wrap;
  }

  function userNode(text, images) {
    var node = messageShell("user");
    node.dataset.text = text;
    node.dataset.images = JSON.stringify(images);
    if (images.length) {
      var strip = document.createElement("div");
      strip.className = "thumbs";
      images.forEach(function (url, i) {
        var img = document.createElement("img");
        img.src = url;
        img.alt = "Attached image " + (i + 1);
        img.className = "thumb";
        strip.appendChild(img);
      });
      node.querySelector(".bubble").appendChild(strip);
    }
    var body = document.createElement("span");
    body.className = "text plain";
    body.textContent = text;
    node.querySelector(".bubble").appendChild(body);
    return node;
  }

  /* An answer: its Markdown body, and a line naming the provider and model that answered. */
  function answerNode(origin) {
    var node = messageShell("assistant");
    var body = document.createElement("div");
    body.className = "text markdown";
    var label = document.createElement("span");
    label.className = "answered-by";
    node.querySelector(".bubble").append(body, label);
    node.__raw = "";
    setOrigin(node, origin);
    return node;
  }

  function setOrigin(node, origin) {
    var label = node.querySelector(".answered-by");
    var names = [origin.provider, origin.model].filter(Boolean).join(" · ");
    var failed = failedRoutes(origin.fallbacks || []);
    label.textContent = names + (failed.length ? " — fallback after " + failed.join(", ") + " failed" : "");
    label.classList.toggle("fallback", failed.length > 0);
    label.hidden = !label.textContent;
  }

  /* "openai/gpt-4o-mini (503 ×3)": each model that failed, once, with its last status and its attempts. */
  function failedRoutes(attempts) {
    var order = [], seen = {};
    attempts.forEach(function (f) {
      var name = [f.provider, f.model].filter(Boolean).join("/");
      if (!seen[name]) { seen[name] = {count: 0}; order.push(name); }
      seen[name].count += 1;
      seen[name].status = f.status;
    });
    return order.map(function (name) {
      var info = seen[name];
      var detail = [info.status, info.count > 1 ? "\u00d7" + info.count : ""].filter(Boolean).join(" ");
      return name + (detail ? " (" + detail + ")" : "");
    });
  }

  function setAnswerText(node, text) {
    node.__raw = text;
    renderMarkdown(node.querySelector(".text"), text);
  }

  function setStatus(node, status, error) {
    var badge = node.querySelector(".badge");
    if (!badge) {
      badge = document.createElement("span");
      node.querySelector(".bubble").appendChild(badge);
    }
    badge.className = "badge " + status;
    badge.textContent = status === "partial" ? "Stopped before the end" : "Error" + (error ? ": " + error : "");
  }

  /* Regenerate on the last answer, Edit on the last question, Copy on every answer. */
  function updateActions() {
    Array.prototype.forEach.call(el.messages.querySelectorAll(".actions"), function (a) { a.remove(); });
    if (state.streaming) return;
    var answers = el.messages.querySelectorAll(".message.assistant");
    Array.prototype.forEach.call(answers, function (node) {
      var actions = actionBar(node);
      if (node.__raw) actions.appendChild(actionButton("Copy", "Copy the answer", function (button) {
        copyText(node.__raw || "").then(function () { flash(button, "Copied"); });
      }));
    });
    if (!state.chatId) return;
    var users = el.messages.querySelectorAll(".message.user");
    var lastUser = users[users.length - 1];
    var last = el.messages.lastElementChild;
    if (last && last.classList.contains("assistant")) {
      last.querySelector(".actions").appendChild(actionButton("Regenerate", "Answer the last message again", regenerate));
    }
    if (lastUser) actionBar(lastUser).appendChild(actionButton("Edit", "Edit and resend your last message", startEdit));
  }

  function actionBar(node) {
    var actions = document.createElement("div");
    actions.className = "actions";
    node.querySelector(".bubble").appendChild(actions);
    return actions;
  }

  function actionButton(label, title, onClick) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "action";
    button.textContent = label;
    button.title = title;
    button.addEventListener("click", function () { onClick(button); });
    return button;
  }

  function nearBottom() {
    return el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 80;
  }

  /* Follow the answer only while the reader is at the end: `state.pinned` is where the reader last
     scrolled to (growing content fires no scroll event), so reading further up is never disturbed. */
  function scrollToEnd(force) {
    if (force || state.pinned) el.messages.scrollTo({top: el.messages.scrollHeight, behavior: "instant"});
  }

  // --- composing: text, images, editing ---------------------------------------------------------------

  function setupComposer() {
    el.composer.addEventListener("submit", function (event) { event.preventDefault(); send(); });
    el.composerInput.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
      if (event.key === "Escape" && state.editing) cancelEdit();
    });
    el.composerInput.addEventListener("input", autosize);
    el.composerInput.addEventListener("paste", function (event) {
      var files = Array.prototype.filter.call((event.clipboardData || {}).files || [], isImage);
      if (files.length) { event.preventDefault(); files.forEach(attachFile); }
    });
    el.attachButton.addEventListener("click", function () { el.imageInput.click(); });
    el.imageInput.addEventListener("change", function () {
      Array.prototype.forEach.call(el.imageInput.files, attachFile);
      el.imageInput.value = "";
    });
    el.cancelEdit.addEventListener("click", cancelEdit);
    el.stopButton.addEventListener("click", function () { if (state.streaming) state.streaming.abort(); });
    el.messages.addEventListener("scroll", function () { state.pinned = nearBottom(); }, {passive: true});
  }

  function isImage(file) { return /^image\/(png|jpeg|gif|webp)$/.test(file.type); }

  function attachFile(file) {
    if (!isImage(file)) { showNotice(file.name + " is not a PNG, JPEG, GIF or WebP image."); return; }
    imageUrl(file).then(addAttachment, function () { showNotice("Could not read the image " + file.name + "."); });
  }

  /* A data: URL of the image: as it is when small, else scaled to IMAGE_MAX_SIDE as JPEG, so that a
     photo fits the server's request size limit. */
  function imageUrl(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onerror = reject;
      reader.onload = function () {
        if (file.size <= IMAGE_KEEP_BYTES) { resolve(reader.result); return; }
        var img = new Image();
        img.onerror = reject;
        img.onload = function () {
          var scale = Math.min(1, IMAGE_MAX_SIDE / Math.max(img.width, img.height));
          var canvas = document.createElement("canvas");
          canvas.width = Math.round(img.width * scale);
          canvas.height = Math.round(img.height * scale);
          canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
          resolve(canvas.toDataURL("image/jpeg", 0.85));
        };
        img.src = reader.result;
      };
      reader.readAsDataURL(file);
    });
  }

  function addAttachment(url) {
    state.attachments.push(url);
    renderAttachments();
  }

  function renderAttachments() {
    el.attachments.textContent = "";
    state.attachments.forEach(function (url, i) {
      var item = document.createElement("li");
      var img = document.createElement("img");
      img.src = url;
      img.alt = "Image " + (i + 1) + " to send";
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-attachment";
      remove.textContent = "\u00d7";
      remove.setAttribute("aria-label", "Remove image " + (i + 1));
      remove.addEventListener("click", function () {
        state.attachments.splice(i, 1);
        renderAttachments();
        el.composerInput.focus();
      });
      item.append(img, remove);
      el.attachments.appendChild(item);
    });
    el.attachments.hidden = state.attachments.length === 0;
  }

  function startEdit() {
    var users = el.messages.querySelectorAll(".message.user");
    var last = users[users.length - 1];
    if (!last || state.streaming) return;
    state.editing = true;
    el.editing.hidden = false;
    el.composerInput.value = last.dataset.text || "";
    state.attachments = JSON.parse(last.dataset.images || "[]");
    renderAttachments();
    autosize();
    el.composerInput.focus();
  }

  function cancelEdit() {
    if (!state.editing) return;
    state.editing = false;
    el.editing.hidden = true;
    el.composerInput.value = "";
    state.attachments = [];
    renderAttachments();
    autosize();
  }

  function autosize() {
    el.composerInput.style.height = "auto";
    el.composerInput.style.height = Math.min(el.composerInput.scrollHeight, 200) + "px";
  }

  function setBusy(busy) {
    el.sendButton.disabled = busy;
    el.stopButton.hidden = !busy;
    el.messages.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // --- sending and streaming ------------------------------------------------------------------------------

  function send() {
    var text = el.composerInput.value.trim();
    if ((!text && !state.attachments.length) || state.streaming) return;
    var images = state.attachments.slice();
    var body = {message: messageContent(text, images)};
    if (state.editing) {
      body.replace = "message";
      removeFromLastQuestion();
    }
    state.editing = false;
    el.editing.hidden = true;
    el.composerInput.value = "";
    state.attachments = [];
    renderAttachments();
    autosize();
    if (el.welcome.parentNode) el.welcome.remove();
    var question = userNode(text, images);
    el.messages.appendChild(question);
    turn(body, text || "Image", function () {  // a refused message goes back into the composer
      question.remove();
      el.composerInput.value = text;
      state.attachments = images;
      renderAttachments();
    });
  }

  function messageContent(text, images) {
    if (!images.length) return text;
    var parts = text ? [{type: "text", text: text}] : [];
    return parts.concat(images.map(function (url) { return {type: "image_url", image_url: {url: url}}; }));
  }

  function regenerate() {
    if (state.streaming || !state.chatId) return;
    var last = el.messages.lastElementChild;
    if (last && last.classList.contains("assistant")) last.remove();
    turn({replace: "answer"}, "", null);
  }

  function removeFromLastQuestion() {
    var users = el.messages.querySelectorAll(".message.user");
    var last = users[users.length - 1];
    while (last && last.nextSibling) last.nextSibling.remove();
    if (last) last.remove();
  }

  /* One turn: POST /chat with `body` (plus the chat, the model and stream), the answer streamed into
     a new message. `title` names a new chat in the list until the server's summary arrives. */
  function turn(body, title, onBusy) {
    hideNotice();
    var answer = answerNode({});
    answer.classList.add("streaming");
    el.messages.appendChild(answer);
    scrollToEnd(true);

    var chatId = state.chatId || state.pendingId;
    if (chatId) body.chat_id = chatId;
    if (el.modelSelect.value) body.model = el.modelSelect.value;
    body.stream = true;

    var controller = new AbortController();
    state.streaming = controller;
    setBusy(true);
    updateActions();
    var origin = {fallbacks: []};
    var finished = false;
    var raw = "";
    var frame = null;
    function paint() {
      frame = null;
      setAnswerText(answer, raw);
      scrollToEnd(false);
    }

    api("/chat", {method: "POST", headers: {"Content-Type": "application/json", "Accept": "text/event-stream"},
                  body: JSON.stringify(body), signal: controller.signal})
      .then(function (response) {
        var id = response.headers.get("X-Chat-ID");
        if (!response.ok || !response.body) {
          return readJson(response).then(function () { throw new Error("unexpected answer"); });
        }
        if (id) adoptChat(id, title);
        return readEvents(response.body, function (event) {
          if (event.type === "delta") {
            raw += event.content;
            if (!frame) frame = requestAnimationFrame(paint);
          } else if (event.type === "fallback") {
            origin.fallbacks.push(event);
          } else if (event.type === "start") {
            origin.provider = event.provider;
            origin.model = event.model;
            setOrigin(answer, origin);
          } else if (event.type === "done") {
            finished = true;
            origin.provider = event.provider || origin.provider;
            origin.model = event.model || origin.model;
            setOrigin(answer, origin);
            if (event.chat_id) adoptChat(event.chat_id, title);
          } else if (event.type === "error") {
            finished = true;
            setStatus(answer, "error", event.message);
            if (event.chat_id) adoptChat(event.chat_id, title);
          }
        });
      })
      .then(function () {
        if (!finished) setStatus(answer, "partial");
      })
      .catch(function (error) {
        if (error.name === "AbortError") { setStatus(answer, "partial"); return; }
        if (error.status === 409 && onBusy) {
          answer.remove();
          onBusy();
          showNotice("This chat is still answering another message. Send again when it has finished.");
          return;
        }
        if (error.body && error.body.error && error.body.error.chat_id) adoptChat(error.body.error.chat_id, title);
        setStatus(answer, "error", error.message);
        if (error.status >= 400 && error.status < 500 && error.status !== 401) showNotice(error.message);
      })
      .then(function () {
        if (frame) { cancelAnimationFrame(frame); frame = null; }
        setAnswerText(answer, raw);
        answer.classList.remove("streaming");
        state.streaming = null;
        setBusy(false);
        updateActions();
        scrollToEnd(false);
        refreshCurrent();
        el.composerInput.focus();
      });
  }

  function adoptChat(id, firstMessage) {
    if (state.chatId === id) return;
    state.chatId = id;
    state.pendingId = null;
    rememberChatModel(id, el.modelSelect.value);
    var summary = state.chats[id] || {title: firstMessage.slice(0, 80), last_updated: new Date().toISOString()};
    upsertChat(id, summary);
    history.replaceState(null, "", "#chat=" + encodeURIComponent(id));
    el.chatTitle.textContent = summary.title || id;
    el.chatMeta.textContent = id;
    syncChatMenu();
  }

  function refreshCurrent() {
    var id = state.chatId;
    if (!id) return;
    api("/chat/history/" + encodeURIComponent(id)).then(readJson).then(function (body) {
      var summary = {title: body.history.title, created_at: body.history.created_at,
                     last_updated: body.history.last_updated, message_count: body.history.message_count};
      upsertChat(id, summary);
      if (state.chatId === id) setHeading(id, body.history);
    }).catch(function () { /* the list refreshes on the next load */ });
  }

  /* Read a server-sent event stream: events are separated by a blank line; "data:" lines carry
     JSON; lines starting with ":" are heartbeats. */
  function readEvents(stream, onEvent) {
    var reader = stream.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { flush(buffer + "\n\n"); return; }
        buffer += decoder.decode(chunk.value, {stream: true});
        buffer = flush(buffer);
        return pump();
      });
    }
    function flush(text) {
      var parts = text.replace(/\r\n/g, "\n").split("\n\n");
      var rest = parts.pop();
      parts.forEach(function (block) {
        var data = block.split("\n").filter(function (line) { return line.indexOf("data:") === 0; })
          .map(function (line) { return line.slice(5).replace(/^ /, ""); }).join("\n");
        if (!data || data === "[DONE]") return;
        var event;
        try { event = JSON.parse(data); } catch (e) { return; /* not one of ours */ }
        onEvent(event);
      });
      return rest;
    }
    return pump();
  }

  // --- helpers ------------------------------------------------------------------------------------------

  function readJson(response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      if (response.ok) return body;
      var error = new Error((body.error && body.error.message) || ("HTTP " + response.status));
      error.status = response.status;
      error.body = body;
      throw error;
    });
  }

  function showNotice(text) {
    el.notice.textContent = text;
    el.notice.hidden = false;
  }

  function hideNotice() {
    el.notice.hidden = true;
    el.notice.textContent = "";
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/["\\]/g, "\\$&");
  }

  function relativeTime(iso) {
    if (!iso) return "";
    var seconds = (Date.now() - new Date(iso).getTime()) / 1000;
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    if (seconds < 7 * 86400) return Math.round(seconds / 86400) + " d ago";
    return new Date(iso).toLocaleDateString();
  }
})();
