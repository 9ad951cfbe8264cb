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
  var HISTORY_PAGE = 40;  // messages of an open chat rendered at a time
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
    files: [],           // {name, data (base64), size} of the files of the next message
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
     "usage-limits", "settings-button", "settings-dialog", "settings-form", "system-input", "temperature-input",
     "settings-error", "settings-cancel", "settings-hint"].forEach(function (id) {
      el[id.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); })] = document.getElementById(id);
    });
    setupMarkdown();
    setupEarlier();
    setupTheme();
    setupComposer();
    setupSidebar();
    setupChatMenu();
    setupSettings();
    setupKeyDialog();
    listenToOtherTabs();
    el.usageButton.addEventListener("click", openUsage);
    el.modelSelect.addEventListener("change", rememberModel);
    window.addEventListener("hashchange", openFromHash);
    loadModels().then(function () { return loadChats(true); }).then(openFromHash).then(warmMarkdownWhenIdle);
  });

  /* The first answer rendered in a page pays for compiling the Markdown, sanitising, highlighting and
     math code (about 50 ms of main thread in Chromium, in one task): done once with a small sample
     while the page is idle, so that opening the first chat does not pay it. */
  var WARM_SAMPLE = "## Sample\n\nSome *text* with `code`, a [link](#) and $x^2$.\n\n- one\n- [x] two\n\n" +
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint(1)\n```\n";
  function warmMarkdownWhenIdle() {
    var idle = window.requestIdleCallback || function (callback) { return setTimeout(callback, 200); };
    idle(function () { renderMarkdown(document.createElement("div"), WARM_SAMPLE); }, {timeout: 2000});
  }

  // --- every call: the API key, and the key prompt on a 401 ---------------------------------------

  /* fetch() of this server with the stored key as `Authorization: Bearer`. A 401, or a 403 for the
     key itself (revoked, expired), opens the key prompt and rejects like any other error; so does a
     network failure (no `status`). */
  function api(path, options) {
    options = options || {};
    var headers = Object.assign({"Accept": "application/json"}, options.headers || {});
    var key = load(API_KEY);
    if (key) headers["Authorization"] = "Bearer " + key;
    return fetch(path, Object.assign({}, options, {headers: headers})).then(function (response) {
      if (response.status !== 401 && response.status !== 403) return response;
      return readJson(response).catch(function (error) {
        if (isKeyRefusal(error)) askForKey(keyRefusalText(error, key));
        throw error;
      });
    });
  }

  function isKeyRefusal(error) {
    var code = error.body && error.body.error && error.body.error.code || "";
    return error.status === 401 || (error.status === 403 && /_api_key$/.test(code));
  }

  /* Why the key prompt is open, in words for the person at the page. */
  function keyRefusalText(error, key) {
    var code = error.body && error.body.error && error.body.error.code || "";
    if (!key) return "This server asks for a key before it answers. Paste the key you were given; it is kept in this browser only.";
    if (code === "revoked_api_key") return "This key has been switched off. Ask whoever gave it to you for a new one and paste it here.";
    if (code === "expired_api_key") return "This key has expired. Ask whoever gave it to you for a new one and paste it here.";
    return "This server does not know the key this browser sent. Check that it was copied whole, or paste another.";
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
      if (isKeyRefusal(error)) { el.usageDialog.close(); return; }  // the key prompt is open instead
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

  /* One formatter for every count: `toLocaleString` builds a new one on each call (40 answers' token
     lines cost ~45 ms of an opening). */
  var NUMBERS = new Intl.NumberFormat();
  function count(n) { return NUMBERS.format(Number(n)); }

  /* Dollars: cents from one cent up, else up to six decimals (a call to a small model costs less). */
  function usd(amount) {
    var value = Number(amount);
    if (value === 0) return "$0.00";
    if (value >= 0.01) return "$" + value.toFixed(2);
    if (value < 0.0000005) return "<$0.000001";
    return "$" + value.toFixed(6).replace(/0+$/, "");
  }

  // --- Markdown ---------------------------------------------------------------------------------------

  /* Math is left as the model wrote it ($...$, $$...$$, \(...\), \[...\]) for KaTeX: marked would
     otherwise eat its backslashes and read its underscores as emphasis. */
  var MATH_BLOCK = /^\$\$([\s\S]+?)\$\$(?:\n|$)|^\\\[([\s\S]+?)\\\](?:\n|$)/;
  var MATH_INLINE = /^\$(?!\s)([^$\n]+?)\$(?!\d)|^\\\(([\s\S]+?)\\\)/;
  /* What Markdown produces, and nothing else: model output may not carry a class, an id, a style, a
     name or a form control, so it cannot draw the page's own notices, buttons, bubbles or overlays.
     Our own renderers (code blocks, math) mark their elements with MARK, an attribute named at random
     per page load, which a model cannot guess; decorate() reads it and removes it. */
  var MARK = "data-md" + Math.random().toString(36).slice(2, 10);
  var MARKDOWN_TAGS = ["a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
                       "i", "img", "input", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
                       "table", "tbody", "td", "th", "thead", "tr", "ul"];
  var MARKDOWN_ATTRS = ["href", "src", "alt", "title", "align", "start", "type", "checked", "disabled"];
  var LIVE_HIGHLIGHT_CHARS = 5000;  // a longer code block still growing is highlighted once it is complete

  function setupMarkdown() {
    if (!window.marked || !window.DOMPurify) return;
    marked.use({gfm: true, breaks: false, renderer: {code: codeBlock}, extensions: [
      {name: "mathBlock", level: "block", start: function (src) { var i = src.search(/\$\$|\\\[/); return i < 0 ? undefined : i; },
       tokenizer: function (src) { var m = MATH_BLOCK.exec(src); if (m) return {type: "mathBlock", raw: m[0], tex: m[1] || m[2]}; },
       renderer: function (token) { return "<p " + MARK + '="math-block">' + escapeHtml(token.raw.trim()) + "</p>\n"; }},
      {name: "mathInline", level: "inline", start: function (src) { var i = src.search(/\$|\\\(/); return i < 0 ? undefined : i; },
       tokenizer: function (src) { var m = MATH_INLINE.exec(src); if (m) return {type: "mathInline", raw: m[0], tex: m[1] || m[2]}; },
       renderer: function (token) { return "<span " + MARK + '="math-inline">' + escapeHtml(token.raw) + "</span>"; }}
    ]});
    DOMPurify.addHook("afterSanitizeAttributes", function (node) {
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
      if (node.tagName === "INPUT") {  // a task list's box: shown, never a control
        node.setAttribute("type", "checkbox");
        node.setAttribute("disabled", "");
      }
    });
    if (window.hljs) hljs.configure({ignoreUnescapedHTML: true});
  }

  /* A fenced or indented code block, its language (the first word of the fence's info) in MARK ("code-python":
     DOMPurify drops a value that looks like a URL scheme, such as "code:python"). */
  function codeBlock(token) {
    var lang = /^[A-Za-z0-9_+#.-]{1,40}/.exec(token.lang || "");
    return "<pre><code " + MARK + '="code' + (lang ? "-" + lang[0] : "") + '">' + escapeHtml(token.text.replace(/\n$/, "")) +
      "\n</code></pre>\n";
  }

  /* The answer's HTML: Markdown parsed, then sanitised to MARKDOWN_TAGS and MARKDOWN_ATTRS (no script,
     no event handler, no javascript: URL, no class, id or style survive). Without the libraries, the
     text as it is. */
  function markdownHtml(text) {
    if (!window.marked || !window.DOMPurify) return escapeHtml(text).replace(/\n/g, "<br>");
    return sanitize(marked.parse(text));
  }

  function sanitize(html) {
    return DOMPurify.sanitize(html, {ALLOWED_TAGS: MARKDOWN_TAGS, ALLOWED_ATTR: MARKDOWN_ATTRS.concat([MARK]),
                                     ALLOW_DATA_ATTR: false, ALLOW_ARIA_ATTR: false, ALLOW_UNKNOWN_PROTOCOLS: false});
  }

  /* The top-level nodes of sanitised `html`, each with its source (to tell an unchanged block). */
  function htmlNodes(html) {
    var scratch = document.createElement("div");
    scratch.innerHTML = html;
    return Array.prototype.map.call(scratch.childNodes, function (node) {
      node.__source = node.nodeType === 1 ? node.outerHTML : node.textContent;
      return node;
    });
  }

  function shownNode(node, highlight) {
    var shown = node.nodeType === 1 ? decorate(node, highlight) : node;
    shown.__source = node.__source;
    return shown;
  }

  /* Render `text` into `target` without flicker: only the top-level blocks whose HTML changed are
     replaced, so earlier blocks, their highlighting and any selection in them stay as they are. */
  function renderMarkdown(target, text) {
    var fresh = htmlNodes(markdownHtml(text));
    fresh.forEach(function (node, index) {
      var old = target.childNodes[index];
      if (old && old.__source === node.__source) return;
      var shown = shownNode(node, true);
      if (old) target.replaceChild(shown, old); else target.appendChild(shown);
    });
    while (target.childNodes.length > fresh.length) target.removeChild(target.lastChild);
    target.__stream = null;
  }

  /* While an answer streams, each frame parses only what follows the blocks already complete: marked's
     lexer splits that tail into top-level blocks; all but the last are complete (rendered once and
     kept), the last is still growing and is rendered again. So a frame costs the last block, not the
     whole answer (a 50,000-character answer was re-parsed in full every frame). */
  function renderStreaming(target, text, final) {
    if (!window.marked || !window.DOMPurify) { renderMarkdown(target, text); return; }
    var stream = target.__stream;
    if (!stream || text.lastIndexOf(stream.prefix, 0) !== 0) {
      target.textContent = "";
      stream = target.__stream = {offset: 0, kept: 0, prefix: ""};
    }
    var tokens = marked.lexer(text.slice(stream.offset));
    var last = tokens.length - 1;
    while (last > 0 && tokens[last].type === "space") last--;
    while (target.childNodes.length > stream.kept) target.removeChild(target.lastChild);
    if (last > 0) {
      var complete = tokens.slice(0, last);
      complete.links = tokens.links;
      htmlNodes(sanitize(marked.parser(complete))).forEach(function (node) { target.appendChild(shownNode(node, true)); });
      stream.kept = target.childNodes.length;
      stream.offset += complete.reduce(function (sum, token) { return sum + token.raw.length; }, 0);
      stream.prefix = text.slice(0, stream.offset);
    }
    var growing = tokens.slice(last);
    growing.links = tokens.links;
    var small = final || text.length - stream.offset < LIVE_HIGHLIGHT_CHARS;
    htmlNodes(sanitize(marked.parser(growing))).forEach(function (node) { target.appendChild(shownNode(node, small)); });
  }

  /* The block as shown, from what our renderers marked (MARK) and what sanitising kept: code
     highlighted (unless `highlight` is false) with a copy button, math typeset by KaTeX, task lists'
     boxes named, tables in a scrolling wrapper. The classes and attributes are added here, after
     sanitising, never taken from the model's output. */
  function decorate(block, highlight) {
    var marked_ = block.hasAttribute(MARK) ? [block] : [];
    Array.prototype.push.apply(marked_, block.querySelectorAll("[" + MARK + "]"));
    marked_.forEach(function (node) {
      var kind = node.getAttribute(MARK);
      node.removeAttribute(MARK);
      if (kind.lastIndexOf("code", 0) === 0) decorateCode(node, kind.slice(5), highlight);
      else if (kind.lastIndexOf("math", 0) === 0) typeset(node, kind === "math-block");
    });
    Array.prototype.forEach.call(block.querySelectorAll("li > input[type=checkbox]:first-child"), function (box) {
      box.parentNode.classList.add("task-list-item");
      box.parentNode.parentNode.classList.add("task-list");
      box.setAttribute("aria-label", box.checked ? "Done" : "Not done");
    });
    Array.prototype.forEach.call(block.querySelectorAll("table"), function (table) {
      table.parentNode.insertBefore(tableWrap(), table).appendChild(table);
    });
    return block.matches("table") ? tableWrap().appendChild(block).parentNode : block;
  }

  function decorateCode(code, lang, highlight) {
    var pre = code.parentNode;
    if (lang) code.classList.add("language-" + lang);
    if (highlight && window.hljs) hljs.highlightElement(code);
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
  }

  /* $...$, \(...\), $$...$$ and \[...\] by KaTeX (vendored, fonts served from here); what KaTeX
     cannot read stays as written. KaTeX builds its nodes through the DOM (no inline <style>), which
     the page's Content-Security-Policy allows. */
  function typeset(node, display) {
    var source = node.textContent;
    var tex = display ? source.replace(/^\$\$|\$\$$|^\\\[|\\\]$/g, "") : source.replace(/^\$|\$$|^\\\(|\\\)$/g, "");
    node.classList.add("math");
    if (!window.katex) return;
    try {
      katex.render(tex, node, {displayMode: display, throwOnError: true, output: "htmlAndMathml", trust: false,
                               maxSize: 50, maxExpand: 200});
      node.title = source;
    } catch (e) {
      node.textContent = source;  // not TeX after all (a price in dollars, say)
    }
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
     models ("provider/model"), each group as /v1/models lists it; only those the key may use (its
     models in /v1/key/info), so nobody learns it from a refusal. */
  function loadModels() {
    var allowed = api("/v1/key/info").then(readJson).then(function (info) {
      return info.key ? info.key.models : null;
    }, function () { return null; });
    return Promise.all([api("/v1/models").then(readJson), allowed]).then(function (answers) {
      var models = (answers[0].data || []).filter(function (m) {
        return m.mode !== "embedding" && keyMayUse(answers[1], m);
      }).map(function (m) { return m.id; });
      var aliases = models.filter(function (id) { return id.indexOf("/") < 0; });
      var named = models.filter(function (id) { return id.indexOf("/") >= 0; });
      el.modelSelect.textContent = "";
      el.modelSelect.appendChild(option("", "Default model"));
      if (aliases.length) el.modelSelect.appendChild(group("Aliases", aliases));
      if (named.length) el.modelSelect.appendChild(group("Models", named));
      selectModel(modelOf(state.chatId));
    }).catch(function (error) {
      if (!isKeyRefusal(error)) showNotice("Could not list the models (" + failureText(error) + "); the default model still answers.");
    });
  }

  /* The server's rule (app.keys.service.model_allowed): an entry is a model, "provider/model" or
     "provider/*"; no list allows all. An alias is offered when the list names it or its provider's
     every model (the page does not know which model an alias stands for). */
  function keyMayUse(list, model) {
    if (!list) return true;
    var name = model.id.indexOf("/") >= 0 ? model.id.slice(model.id.indexOf("/") + 1) : model.id;
    return list.some(function (entry) {
      return entry === model.id || entry === name || entry === model.owned_by + "/*";
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
    if (narrow && narrow.addEventListener) narrow.addEventListener("change", function () { toggleSidebar(false); });
    toggleSidebar(false);
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
      if (!isKeyRefusal(error)) showNotice("Could not load the chat list: " + error.message);
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

  /* On a narrow screen the sidebar slides over the chat; closed, it is out of the Tab order and
     of what screen readers list (inert), not only off-screen. */
  var narrow = window.matchMedia ? window.matchMedia("(max-width: 760px)") : null;

  function toggleSidebar(force) {
    var open = force === undefined ? !el.sidebar.classList.contains("open") : force;
    el.sidebar.classList.toggle("open", open);
    el.menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    el.sidebar.inert = !open && !!(narrow && narrow.matches);
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
    [el.renameButton, el.exportMd, el.exportJson].forEach(function (button) { button.hidden = !state.chatId; });
  }

  /* The chat's system prompt and temperature: kept with the chat on the server (PATCH), or, for a
     chat not yet sent, sent with its first message. */
  function setupSettings() {
    el.settingsButton.addEventListener("click", function () {
      el.chatMenu.open = false;
      var current = (state.chatId ? state.settings : state.pendingSettings) || {};
      el.systemInput.value = current.system_prompt || "";
      el.temperatureInput.value = current.temperature === null || current.temperature === undefined ? "" : current.temperature;
      el.settingsError.hidden = true;
      el.settingsDialog.showModal();
    });
    el.settingsCancel.addEventListener("click", function () { el.settingsDialog.close(); });
    el.settingsForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var raw = el.temperatureInput.value.trim();
      var temperature = raw === "" ? null : Number(raw);
      if (temperature !== null && !(temperature >= 0 && temperature <= 2)) {
        el.settingsError.textContent = "The temperature is a number from 0 to 2, or empty.";
        el.settingsError.hidden = false;
        return;
      }
      var chosen = {system_prompt: el.systemInput.value, temperature: temperature};
      if (!state.chatId) { state.pendingSettings = chosen; el.settingsDialog.close(); return; }
      var id = state.chatId;
      api("/chat/history/" + encodeURIComponent(id), {method: "PATCH", headers: {"Content-Type": "application/json"},
                                                       body: JSON.stringify(chosen)})
        .then(readJson).then(function (body) {
          state.settings = {system_prompt: body.system_prompt, temperature: body.temperature};
          el.settingsDialog.close();
          reloadMessages();
          announce();
        }).catch(function (error) {
          el.settingsError.textContent = "Not saved: " + failureText(error);
          el.settingsError.hidden = false;
        });
    });
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
      showChat(id, body.history);
      selectModel(modelOf(id));
      markActive();
      syncChatMenu();
      el.composerInput.focus();
    }).catch(function (error) {
      if (isKeyRefusal(error)) return;
      showNotice(error.status === 404 ? "That chat no longer exists."
        : error.status ? "Could not open the chat: " + failureText(error) : failureText(error).split(".")[0] + ".",
        error.status === 404 ? null : function () { openChat(id); });
      if (error.status === 404) startNewChat(null);
    });
  }

  /* The chat's messages: only the last HISTORY_PAGE are rendered at first (a 1,000-message chat took
     one 1.2-2.0 s task with every node in the page); earlier ones a page at a time, when the reader
     scrolls up to them or asks. */
  function showChat(id, history) {
    clearMessages();
    state.history = history.messages.slice();
    state.shownFrom = state.history.length;
    state.lastId = history.last_message_id || null;
    state.settings = {system_prompt: history.system_prompt, temperature: history.temperature};
    showEarlier();
    setHeading(id, history);
    updateActions();
    scrollToEnd(true);
    if (history.answering) resume(id, history.answering);
  }

  function showEarlier() {
    if (!state.shownFrom) return;
    var messages = state.history || [];
    var from = Math.max(0, state.shownFrom - HISTORY_PAGE);
    var before = el.messages.firstChild;
    var height = el.messages.scrollHeight;
    var fragment = document.createDocumentFragment();
    messages.slice(from, state.shownFrom).forEach(function (message) { fragment.appendChild(storedNode(message)); });
    if (el.earlier.parentNode) el.earlier.remove();
    el.messages.insertBefore(fragment, before && before !== el.earlier ? before : el.messages.firstChild);
    state.shownFrom = from;
    if (from > 0) {
      var next = Math.min(HISTORY_PAGE, from);
      el.earlierButton.textContent = "Show " + next + " earlier message" + (next === 1 ? "" : "s") + " (" + from + " not shown)";
      el.messages.insertBefore(el.earlier, el.messages.firstChild);
      if (el.earlierWatch) {  // observed afresh: a row still in view after a short page loads the next one
        el.earlierWatch.unobserve(el.earlier);
        el.earlierWatch.observe(el.earlier);
      }
    }
    if (before) el.messages.scrollTop += el.messages.scrollHeight - height;  // the reader's place stays put
  }

  function startNewChat(customId) {
    if (state.streaming) state.streaming.abort();
    state.chatId = null;
    state.pendingId = customId;
    state.lastId = null;
    state.pendingSettings = null;
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

  /* The "earlier messages" row at the top of a long chat: its button, and a watch that shows the
     previous page when the reader scrolls up to it. */
  function setupEarlier() {
    el.earlier = document.createElement("div");
    el.earlier.className = "earlier";
    el.earlierButton = document.createElement("button");
    el.earlierButton.type = "button";
    el.earlierButton.className = "button ghost";
    el.earlierButton.addEventListener("click", showEarlier);
    el.earlier.appendChild(el.earlierButton);
    if (!window.IntersectionObserver) return;
    el.earlierWatch = new IntersectionObserver(function (entries) {
      if (entries.some(function (entry) { return entry.isIntersecting; }) && el.earlier.parentNode) {
        requestAnimationFrame(showEarlier);
      }
    }, {root: el.messages, rootMargin: "200px 0px 0px 0px"});
  }

  function clearMessages() {
    el.messages.textContent = "";
  }

  function storedNode(message) {
    if (message.role === "system") {
      var details = document.createElement("details");
      details.className = "system-prompt";
      var summary = document.createElement("summary");
      summary.textContent = "System prompt";
      var text = document.createElement("p");
      text.textContent = message.content;
      details.append(summary, text);
      return details;
    }
    var node = message.role === "user" ? userNode(message.content, message.images || [], message.files || [])
      : answerNode({provider: message.provider, model: message.model});
    if (message.id) node.dataset.id = message.id;
    if (message.role === "assistant") {
      if (message.reasoning) setReasoning(node, message.reasoning);
      setAnswerText(node, message.content);
      setUsage(node, message.usage, message.cost_usd);
    }
    if (message.status && message.status !== "complete") setStatus(node, message.status, message.error);
    if (message.versions && message.versions.count > 1) addVersions(node, message.versions);
    return node;
  }

  /* "‹ 2/3 ›" under a message with versions: another version is made active on the server (and the
     branch under it), and the chat is shown as it then is. */
  function addVersions(node, versions) {
    var nav = document.createElement("div");
    nav.className = "versions";
    nav.setAttribute("role", "group");
    nav.setAttribute("aria-label", "Versions of this message");
    var label = document.createElement("span");
    label.textContent = (versions.index + 1) + "/" + versions.count;
    [[-1, "\u2039", "Previous version"], [1, "\u203a", "Next version"]].forEach(function (step) {
      var target = versions.ids[versions.index + step[0]];
      var button = document.createElement("button");
      button.type = "button";
      button.className = "action";
      button.textContent = step[1];
      button.setAttribute("aria-label", step[2]);
      button.disabled = target === undefined;
      button.addEventListener("click", function () { showVersion(target); });
      nav.appendChild(button);
      if (step[0] < 0) nav.appendChild(label);
    });
    node.querySelector(".bubble").appendChild(nav);
  }

  function showVersion(messageId) {
    var id = state.chatId;
    if (!id || state.streaming) return;
    api("/chat/history/" + encodeURIComponent(id) + "/messages/" + messageId + "/activate", {method: "POST"})
      .then(readJson).then(function (body) {
        if (state.chatId !== id) return;
        showChat(id, body.history);
        announce();
      }).catch(function (error) {
        if (!isKeyRefusal(error)) showNotice("Could not show that version: " + failureText(error));
        reloadMessages();
      });
  }

  /* The model's reasoning, folded above the answer. */
  function setReasoning(node, text) {
    var details = node.querySelector(".reasoning");
    if (!details) {
      details = document.createElement("details");
      details.className = "reasoning";
      var summary = document.createElement("summary");
      summary.textContent = "Reasoning";
      var body = document.createElement("div");
      body.className = "reasoning-text";
      details.append(summary, body);
      node.querySelector(".bubble").insertBefore(details, node.querySelector(".text"));
    }
    details.querySelector(".reasoning-text").textContent = text;
  }

  /* Tokens of the answer and what it cost, under it: "62 tokens (50 in, 40 of them cached, 12 out) · $0.000031".
     The prompt tokens read from (or written to) the vendor's prompt cache are named when there were
     any; the cost is left out for a model the server has no price for. */
  function setUsage(node, usage, cost) {
    if (!usage) return;
    var line = node.querySelector(".usage-line");
    if (!line) {
      line = document.createElement("span");
      line.className = "usage-line";
      node.querySelector(".answered-by").after(line);
    }
    var details = usage.prompt_tokens_details || {};
    var prompt = [count(usage.prompt_tokens) + " in"];
    if (details.cached_tokens) prompt.push(count(details.cached_tokens) + " of them cached");
    if (details.cache_creation_tokens) prompt.push(count(details.cache_creation_tokens) + " written to the cache");
    line.textContent = count(usage.total_tokens) + " tokens (" + prompt.join(", ") + ", " +
      count(usage.completion_tokens) + " out)" + (cost == null ? "" : " \u00b7 " + usd(cost));
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

  function userNode(text, images, files) {
    var node = messageShell("user");
    (files || []).forEach(function (file) {
      var chip = document.createElement("span");
      chip.className = "file-chip";
      chip.textContent = file.name + (file.chars ? " \u00b7 " + count(file.chars) + " characters" : "");
      node.querySelector(".bubble").appendChild(chip);
    });
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

  /* The streamed answer's last block rendered as complete (the blocks before it already are: no
     second parse of the whole answer at its end). */
  function finishAnswer(node, text) {
    node.__raw = text;
    var target = node.querySelector(".text");
    if (target.__stream) renderStreaming(target, text, true); else renderMarkdown(target, text);
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
    var last = el.messages.lastElementChild;
    if (last && last.classList.contains("assistant") && last.dataset.id) {
      last.querySelector(".actions").appendChild(actionButton("Regenerate", "Answer this message again (a new version)",
                                                              function () { regenerate(last); }));
    }
    Array.prototype.forEach.call(el.messages.querySelectorAll(".message.user[data-id]"), function (node) {
      actionBar(node).appendChild(actionButton("Edit", "Edit and resend this message (a new version)",
                                               function () { startEdit(node); }));
    });
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
    el.stopButton.addEventListener("click", stopAnswer);
    el.messages.addEventListener("scroll", function () { state.pinned = nearBottom(); }, {passive: true});
  }

  function isImage(file) { return /^image\/(png|jpeg|gif|webp)$/.test(file.type); }

  /* Text, Markdown, code and PDF files go to the server as they are (base64); it reads them, a PDF's
     text included, and gives them to the model before the message. */
  function isDocument(file) {
    return file.type === "application/pdf" || /^text\//.test(file.type) ||
      /\.(pdf|txt|md|markdown|csv|json|ya?ml|toml|xml|html|css|js|ts|py|rb|go|rs|java|kt|c|h|cpp|hpp|cs|php|sh|sql)$/i.test(file.name);
  }

  function attachDocument(file) {
    var reader = new FileReader();
    reader.onerror = function () { showNotice("Could not read the file " + file.name + "."); };
    reader.onload = function () {
      state.files.push({name: file.name, data: String(reader.result).replace(/^data:[^,]*,/, ""), size: file.size});
      renderAttachments();
    };
    reader.readAsDataURL(file);
  }

  function attachFile(file) {
    if (!isImage(file) && isDocument(file)) { attachDocument(file); return; }
    if (!isImage(file)) {
      showNotice(file.name + " is not an image (PNG, JPEG, GIF, WebP) nor a text, Markdown, code or PDF file.");
      return;
    }
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
    state.files.forEach(function (file, i) {
      var item = document.createElement("li");
      item.className = "file";
      var name = document.createElement("span");
      name.className = "file-chip";
      name.textContent = file.name + " \u00b7 " + Math.max(1, Math.round(file.size / 1024)) + " KB";
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-attachment";
      remove.textContent = "\u00d7";
      remove.setAttribute("aria-label", "Remove the file " + file.name);
      remove.addEventListener("click", function () {
        state.files.splice(i, 1);
        renderAttachments();
        el.composerInput.focus();
      });
      item.append(name, remove);
      el.attachments.appendChild(item);
    });
    el.attachments.hidden = state.attachments.length === 0 && state.files.length === 0;
  }

  /* Edit `node`, a question with its id: the composer holds it, and sending makes a new version. */
  function startEdit(node) {
    if (!node || state.streaming) return;
    state.editing = node;
    el.editing.hidden = false;
    el.composerInput.value = node.dataset.text || "";
    state.attachments = JSON.parse(node.dataset.images || "[]");
    renderAttachments();
    autosize();
    el.composerInput.focus();
  }

  function cancelEdit() {
    if (!state.editing) return;
    state.editing = null;
    el.editing.hidden = true;
    el.composerInput.value = "";
    state.attachments = [];
    state.files = [];
    renderAttachments();
    autosize();
  }

  function autosize() {
    el.composerInput.style.height = "auto";
    el.composerInput.style.height = Math.min(el.composerInput.scrollHeight, 200) + "px";
  }

  function setBusy(busy) {
    el.sendButton.disabled = busy;
    el.stopButton.disabled = false;
    el.stopButton.hidden = !busy;
    el.messages.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // --- sending and streaming ------------------------------------------------------------------------------

  /* Send what the composer holds. It is emptied at once, and put back (text and attachments) with
     the reason and a retry if the server does not take the message: nothing typed is lost. */
  function send() {
    var text = el.composerInput.value.trim();
    if ((!text && !state.attachments.length && !state.files.length) || state.streaming) return;
    var draft = {text: text, images: state.attachments.slice(), files: state.files.slice(), editing: state.editing};
    var body = {message: messageContent(text, draft.images)};
    if (draft.files.length) body.files = draft.files.map(function (f) { return {name: f.name, data: f.data}; });
    var replaced = [];
    if (state.editing) {
      body.edit = Number(state.editing.dataset.id);
      replaced = fromNode(state.editing);
    }
    state.editing = null;
    el.editing.hidden = true;
    clearComposer();
    if (el.welcome.parentNode) el.welcome.remove();
    var question = userNode(text, draft.images, draft.files);
    el.messages.appendChild(question);
    turn(body, text || (draft.files[0] || {}).name || "Image", {added: [question], replaced: replaced, draft: draft, question: question});
  }

  function clearComposer() {
    el.composerInput.value = "";
    state.attachments = [];
    state.files = [];
    renderAttachments();
    autosize();
  }

  /* Put a message that was not taken back into the composer (unless something new was typed there). */
  function restoreDraft(draft) {
    if (el.composerInput.value.trim() || state.attachments.length || state.files.length) return;
    el.composerInput.value = draft.text;
    state.attachments = draft.images.slice();
    state.files = draft.files.slice();
    state.editing = draft.editing;
    el.editing.hidden = !draft.editing;
    renderAttachments();
    autosize();
  }

  function messageContent(text, images) {
    if (!images.length) return text;
    var parts = text ? [{type: "text", text: text}] : [];
    return parts.concat(images.map(function (url) { return {type: "image_url", image_url: {url: url}}; }));
  }

  /* Answer again the question of `answer` (an answer node with its id): a new version of it. */
  function regenerate(answer) {
    if (state.streaming || !state.chatId || !answer || !answer.dataset.id) return;
    var replaced = fromNode(answer);
    turn({regenerate: Number(answer.dataset.id)}, "", {added: [], replaced: replaced, draft: null,
                                                       retry: function () { regenerate(answer); }});
  }

  /* `node` and what follows it, hidden until the server takes what replaces them. */
  function fromNode(node) {
    var nodes = [];
    for (; node; node = node.nextElementSibling) nodes.push(node);
    nodes.forEach(function (n) { n.hidden = true; });
    return nodes;
  }

  /* One turn: POST /chat with `body` (plus the chat, the model and stream), the answer streamed into
     a new message. `title` names a new chat in the list until the server's summary arrives. `change`
     is what the page changed for it: nodes `added` and `replaced` (hidden) and the composer's `draft`;
     if the server refuses the turn, the page goes back to what it was and the draft to the composer. */
  function turn(body, title, change) {
    hideNotice();
    var answer = answerNode({});
    answer.classList.add("streaming");
    el.messages.appendChild(answer);
    scrollToEnd(true);

    var chatId = state.chatId || state.pendingId;
    if (chatId) body.chat_id = chatId;
    if (state.chatId && state.lastId) body.after = state.lastId;
    if (!state.chatId) Object.assign(body, newChatSettings());
    if (el.modelSelect.value) body.model = el.modelSelect.value;
    body.stream = true;
    body.resumable = true;  // a reload or a closed tab does not stop it; Stop does

    var controller = new AbortController();
    state.streaming = controller;
    state.answerId = null;
    setBusy(true);
    updateActions();
    var origin = {fallbacks: []};
    var reasoning = "";
    var started = false;
    var finished = false;
    var reread = false;
    var raw = "";
    var frame = null;
    function paint() {
      frame = null;
      renderStreaming(answer.querySelector(".text"), raw);
      answer.__raw = raw;
      scrollToEnd(false);
    }

    api("/chat", {method: "POST", headers: {"Content-Type": "application/json", "Accept": "text/event-stream"},
                  body: JSON.stringify(body), signal: controller.signal})
      .then(function (response) {
        if (!response.ok || !response.body) {
          return readJson(response).then(function () { throw new Error("unexpected answer"); });
        }
        started = true;
        change.replaced.forEach(function (node) { node.remove(); });
        var id = response.headers.get("X-Chat-ID");
        if (id) adoptChat(id, title);
        return readEvents(response.body, function (event) {
          if (event.type === "delta") {
            raw += event.content;
            if (!frame) frame = requestAnimationFrame(paint);
          } else if (event.type === "reasoning") {
            reasoning += event.content;
            setReasoning(answer, reasoning);
          } else if (event.type === "fallback") {
            origin.fallbacks.push(event);
          } else if (event.type === "start") {
            origin.provider = event.provider;
            origin.model = event.model;
            setOrigin(answer, origin);
            noteIds(event, answer, change.question);
          } else if (event.type === "done") {
            finished = true;
            origin.provider = event.provider || origin.provider;
            origin.model = event.model || origin.model;
            setOrigin(answer, origin);
            setUsage(answer, event.usage, event.cost_usd);
            if (event.status && event.status !== "complete") setStatus(answer, event.status, event.error);
            noteIds(event, answer, change.question);
            if (event.chat_id) adoptChat(event.chat_id, title);
          } else if (event.type === "error") {
            noteIds(event, answer, change.question);
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
        if (started) { setStatus(answer, "error", failureText(error)); return; }
        reread = refused(error, answer, change, title);
      })
      .then(function () {
        if (frame) { cancelAnimationFrame(frame); frame = null; }
        if (answer.parentNode) finishAnswer(answer, raw);
        answer.classList.remove("streaming");
        state.streaming = null;
        state.answerId = null;
        setBusy(false);
        updateActions();
        scrollToEnd(false);
        if (started) { noteTurn(title); announce(); }
        if (started && (body.regenerate || body.edit)) reread = true;  // the message's versions, as stored
        if (reread) reloadMessages();
        el.composerInput.focus();
      });
  }

  /* The server did not take the turn: the page goes back to what it was before it, the message to
     the composer, and the reason is shown in words with a retry. Whether the chat must be read again
     (its error names the chat: the server stored the failed turn, and the page shows what it holds). */
  function refused(error, answer, change, title) {
    answer.remove();
    change.added.forEach(function (node) { node.remove(); });
    change.replaced.forEach(function (node) { node.hidden = false; });
    if (change.draft) restoreDraft(change.draft);
    var stored = error.body && error.body.error && error.body.error.chat_id;
    if (stored) adoptChat(stored, title);
    if (!isKeyRefusal(error)) showNotice(failureText(error), change.draft ? send : change.retry);
    return !!stored;
  }

  /* Why a call failed, in words for the person using the page (never a setting's name). */
  function failureText(error) {
    var status = error.status;
    if (!status) {
      return navigator.onLine === false ? "You are offline. Your message is kept: send it again when you are back online."
        : "Could not reach the server. Your message is kept: check the connection and try again.";
    }
    var code = error.body && error.body.error && error.body.error.code;
    if (status === 413 && (code === "file_too_large" || code === "file_text_too_long")) return error.message;
    if (status === 413) {
      return "This message is too large for the server. Remove an image or a file, or shorten the text, then send it again.";
    }
    if (status === 429) {
      var wait = retryAfter(error);
      var which = code && code !== "rate_limited" ? error.message.replace(/\s*try again in[^.]*\.?$/i, "").replace(/\.?$/, ".")
        : "Too many requests for now: this key's limit is reached.";
      return which + (wait ? " Try again in " + waitWords(wait) + "." : " Try again later.");
    }
    if (code === "chat_changed" || code === "message_not_active") {
      return "This chat changed in another tab or window; it now shows what was saved. Your message is kept: send it again.";
    }
    if (status === 409) return "This chat is still answering another message. Send again when it has finished.";
    if (status >= 500) {
      return (error.body && error.body.error ? error.message : "The server could not answer just now (error " + status + ").") +
        " Your message is kept: try again in a moment.";
    }
    return error.message;
  }

  function retryAfter(error) {
    var body = error.body && error.body.error || {};
    var seconds = Number(body.retry_after !== undefined ? body.retry_after : error.retryAfter);
    return isFinite(seconds) && seconds > 0 ? Math.ceil(seconds) : null;
  }

  function waitWords(seconds) {
    if (seconds < 90) return seconds + " s";
    if (seconds < 90 * 60) return Math.round(seconds / 60) + " min";
    return Math.round(seconds / 3600) + " h";
  }

  /* The list's entry of the open chat after a turn, without another call (a key allowed a few
     requests a minute spent two per message when the page read the chat again). */
  function noteTurn(title) {
    var id = state.chatId;
    if (!id) return;
    var summary = Object.assign({title: title.slice(0, 80)}, state.chats[id] || {},
                                {last_updated: new Date().toISOString(), match: undefined});
    upsertChat(id, summary);
  }

  function adoptChat(id, firstMessage) {
    if (state.chatId === id) return;
    state.chatId = id;
    state.pendingId = null;
    state.settings = state.pendingSettings || {};
    state.pendingSettings = null;
    rememberChatModel(id, el.modelSelect.value);
    var summary = state.chats[id] || {title: firstMessage.slice(0, 80), last_updated: new Date().toISOString()};
    upsertChat(id, summary);
    history.replaceState(null, "", "#chat=" + encodeURIComponent(id));
    el.chatTitle.textContent = summary.title || id;
    el.chatMeta.textContent = id;
    syncChatMenu();
  }

  /* The system prompt and temperature chosen for a chat not yet sent (the chat keeps them). */
  function newChatSettings() {
    var chosen = state.pendingSettings || {};
    var out = {};
    if (chosen.system_prompt !== undefined && chosen.system_prompt !== null) out.system = chosen.system_prompt;
    if (chosen.temperature !== undefined && chosen.temperature !== null) out.temperature = chosen.temperature;
    return out;
  }

  /* The ids a stream event names: the question's, the answer's; the answer is the chat's end now. */
  function noteIds(event, answer, question) {
    if (event.answer_id) {
      answer.dataset.id = event.answer_id;
      state.answerId = event.answer_id;
      state.lastId = event.answer_id;
    }
    if (event.message_id && question) question.dataset.id = event.message_id;
  }

  /* Other tabs of this page showing the same chat read it again when this one changed it. */
  var channel = window.BroadcastChannel ? new BroadcastChannel("aiserver.chat") : null;

  function announce() {
    if (channel && state.chatId) channel.postMessage({chat: state.chatId});
  }

  function listenToOtherTabs() {
    if (!channel) return;
    channel.onmessage = function (event) {
      if (event.data && event.data.chat === state.chatId && !state.streaming && !state.editing) reloadMessages();
    };
  }

  /* Follow an answer the server is still producing (this page was reloaded, or another tab asked):
     the text so far is shown at once, then the rest as it is stored. */
  function resume(chatId, answerId) {
    var answer = el.messages.querySelector('.message.assistant[data-id="' + answerId + '"]');
    if (!answer || state.streaming) return;
    var controller = new AbortController();
    state.streaming = controller;
    state.answerId = answerId;
    answer.classList.add("streaming");
    var badge = answer.querySelector(".badge");
    if (badge) badge.remove();
    setBusy(true);
    updateActions();
    var raw = answer.__raw || "";
    var frame = null;
    var finished = false;
    api("/chat/history/" + encodeURIComponent(chatId) + "/messages/" + answerId + "/stream?offset=" + raw.length,
        {headers: {"Accept": "text/event-stream"}, signal: controller.signal})
      .then(function (response) {
        if (!response.ok || !response.body) return readJson(response);
        return readEvents(response.body, function (event) {
          if (event.type === "delta") {
            raw += event.content;
            if (!frame) frame = requestAnimationFrame(function () {
              frame = null;
              renderStreaming(answer.querySelector(".text"), raw);
              scrollToEnd(false);
            });
          } else if (event.type === "done" || event.type === "error") {
            finished = true;
            if (event.reasoning) setReasoning(answer, event.reasoning);
            setUsage(answer, event.usage, event.cost_usd);
            if (event.type === "error" || (event.status && event.status !== "complete")) {
              setStatus(answer, event.type === "error" ? "error" : event.status, event.message || event.error);
            }
          }
        });
      })
      .catch(function (error) {
        if (error.name !== "AbortError") setStatus(answer, "error", failureText(error));
      })
      .then(function () {
        if (frame) { cancelAnimationFrame(frame); frame = null; }
        answer.__raw = raw;
        finishAnswer(answer, raw);
        if (!finished && !answer.querySelector(".badge")) setStatus(answer, "partial");
        answer.classList.remove("streaming");
        state.streaming = null;
        state.answerId = null;
        setBusy(false);
        updateActions();
        announce();
      });
  }

  /* Stop the answer: the server is asked to stop it (a turn survives its page going away) and ends
     the stream with the answer stored as partial; this page stops following if that takes longer
     than STOP_WAIT_MS (or the server cannot be asked). */
  var STOP_WAIT_MS = 3000;

  function stopAnswer() {
    var controller = state.streaming;
    if (!controller) return;
    el.stopButton.disabled = true;
    function abort() { el.stopButton.disabled = false; controller.abort(); }
    if (!state.chatId || !state.answerId) { abort(); return; }
    api("/chat/history/" + encodeURIComponent(state.chatId) + "/messages/" + state.answerId + "/stop", {method: "POST"})
      .then(function () { setTimeout(function () { if (state.streaming === controller) abort(); }, STOP_WAIT_MS); },
            abort);
  }

  /* Read the open chat again and show it as the server holds it: after a failed turn, and when
     another tab changed it. */
  function reloadMessages() {
    var id = state.chatId;
    if (!id || state.streaming) return Promise.resolve();
    return api("/chat/history/" + encodeURIComponent(id)).then(readJson).then(function (body) {
      if (state.chatId !== id || state.streaming) return;
      showChat(id, body.history);
    }).catch(function () { /* what is shown stays; the next action reads again */ });
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
      error.retryAfter = response.headers.get("Retry-After");
      throw error;
    });
  }

  /* A notice above the composer; with `retry`, a button that does it again. */
  function showNotice(text, retry) {
    el.notice.textContent = "";
    var words = document.createElement("span");
    words.textContent = text;
    el.notice.appendChild(words);
    if (retry) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button ghost retry";
      button.textContent = "Try again";
      button.addEventListener("click", function () { hideNotice(); retry(); });
      el.notice.appendChild(button);
    }
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
