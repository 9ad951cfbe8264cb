/* The web chat at /ui: plain JavaScript, talking only to this server.
 *
 *   POST /chat {"message", "chat_id", "provider", "stream": true}  server-sent events, read with
 *        fetch + ReadableStream: start, fallback, delta (text), done / error (both carry chat_id)
 *   GET /chat/history?limit&cursor      the sidebar, newest first, paged
 *   GET /chat/history/{id}              one chat's messages
 *   DELETE /chat/delete/{id}            delete a chat
 *   GET /health                         the configured providers, for the provider picker
 *
 * Loaded in <head> so the saved theme applies before the first paint; the rest waits for the DOM.
 */
"use strict";

(function () {
  var THEME_KEY = "aiserver.theme";
  var PROVIDER_KEY = "aiserver.provider";
  var CHAT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var PAGE_SIZE = 50;
  var root = document.documentElement;
  var systemDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  var unsavedTheme = null;  // the toggle's choice when localStorage is unavailable

  function storedTheme() {
    try { return localStorage.getItem(THEME_KEY) || unsavedTheme; } catch (e) { return unsavedTheme; }
  }

  function applyTheme() {
    var chosen = storedTheme();
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
    cursor: null,        // next page of the sidebar
    streaming: null,     // AbortController of the answer in progress
    chats: {}            // id -> summary, as listed
  };
  var el = {};

  document.addEventListener("DOMContentLoaded", function () {
    ["sidebar", "new-chat-form", "new-chat-id", "new-chat-hint", "chat-list", "empty-list", "load-more",
     "menu-button", "chat-title", "chat-meta", "provider-select", "theme-toggle", "messages", "welcome",
     "notice", "composer", "composer-input", "stop-button", "send-button"].forEach(function (id) {
      el[id.replace(/-([a-z])/g, function (_, c) { return c.toUpperCase(); })] = document.getElementById(id);
    });
    setupTheme();
    setupComposer();
    el.newChatForm.addEventListener("submit", onNewChat);
    el.newChatId.addEventListener("input", function () { validateNewId(false); });
    el.loadMore.addEventListener("click", function () { loadChats(false); });
    el.menuButton.addEventListener("click", function (event) { event.stopPropagation(); toggleSidebar(); });
    document.querySelector(".main").addEventListener("click", closeSidebar);
    document.addEventListener("keydown", function (event) { if (event.key === "Escape") closeSidebar(); });
    el.providerSelect.addEventListener("change", function () {
      try { localStorage.setItem(PROVIDER_KEY, el.providerSelect.value); } catch (e) { /* private mode */ }
    });
    window.addEventListener("hashchange", openFromHash);
    loadProviders();
    loadChats(true).then(openFromHash);
  });

  // --- theme -------------------------------------------------------------------------------------

  function setupTheme() {
    function sync() {
      var active = applyTheme();
      el.themeToggle.setAttribute("aria-pressed", active === "dark" ? "true" : "false");
      el.themeToggle.title = active === "dark" ? "Switch to light mode" : "Switch to dark mode";
    }
    el.themeToggle.addEventListener("click", function () {
      var next = root.getAttribute("data-theme-active") === "dark" ? "light" : "dark";
      unsavedTheme = next;
      try { localStorage.setItem(THEME_KEY, next); } catch (e) { /* remembered for this page only */ }
      sync();
    });
    if (systemDark && systemDark.addEventListener) systemDark.addEventListener("change", sync);
    sync();
  }

  // --- providers -----------------------------------------------------------------------------------

  function loadProviders() {
    return fetch("/health", {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (health) {
        var saved = null;
        try { saved = localStorage.getItem(PROVIDER_KEY); } catch (e) { /* private mode */ }
        Object.keys(health.providers || {}).forEach(function (name) {
          var info = health.providers[name];
          if (!info.configured) return;
          var option = document.createElement("option");
          option.value = name;
          option.textContent = name + (info.default_model ? " · " + info.default_model : "") +
            (info.reachable ? "" : " (unreachable)");
          el.providerSelect.appendChild(option);
        });
        if (saved && el.providerSelect.querySelector('option[value="' + cssEscape(saved) + '"]')) {
          el.providerSelect.value = saved;
        }
      })
      .catch(function () { /* the default provider still works */ });
  }

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/["\\]/g, "\\$&");
  }

  // --- sidebar ---------------------------------------------------------------------------------------

  function loadChats(reset) {
    var url = "/chat/history?limit=" + PAGE_SIZE + (!reset && state.cursor ? "&cursor=" + encodeURIComponent(state.cursor) : "");
    return fetch(url).then(readJson).then(function (body) {
      if (reset) { el.chatList.textContent = ""; state.chats = {}; }
      Object.keys(body.chats).forEach(function (id) {
        state.chats[id] = body.chats[id];
        el.chatList.appendChild(chatItem(id, body.chats[id]));
      });
      state.cursor = body.next_cursor;
      el.loadMore.hidden = !state.cursor;
      el.emptyList.hidden = el.chatList.children.length > 0;
      markActive();
    }).catch(function (error) { showNotice("Could not load the chat list: " + error.message); });
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
    sub.textContent = (summary.title ? id + " · " : "") + relativeTime(summary.last_updated);
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
    el.chatList.insertBefore(chatItem(id, summary), el.chatList.firstChild);
    el.emptyList.hidden = true;
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
    fetch("/chat/delete/" + encodeURIComponent(id), {method: "DELETE"}).then(readJson).then(function () {
      var item = el.chatList.querySelector('[data-chat-id="' + cssEscape(id) + '"]');
      if (item) item.remove();
      delete state.chats[id];
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
    return fetch("/chat/history/" + encodeURIComponent(id)).then(readJson).then(function (body) {
      state.chatId = id;
      state.pendingId = null;
      clearMessages();
      body.history.messages.forEach(renderStored);
      setHeading(id, body.history);
      markActive();
      scrollToEnd();
      el.composerInput.focus();
    }).catch(function (error) {
      showNotice(error.status === 404 ? "That chat no longer exists." : "Could not open the chat: " + error.message);
      if (error.status === 404) startNewChat(null);
    });
  }

  function startNewChat(customId) {
    if (state.streaming) state.streaming.abort();
    state.chatId = null;
    state.pendingId = customId;
    clearMessages();
    el.messages.appendChild(el.welcome);
    el.chatTitle.textContent = customId ? customId : "New chat";
    el.chatMeta.textContent = customId ? "A new chat with this id starts with your first message."
      : "Your messages are saved on this server.";
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    markActive();
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
    var node = messageNode(message.role, message.content);
    if (message.status && message.status !== "complete") setStatus(node, message.status, message.error);
    el.messages.appendChild(node);
  }

  function messageNode(role, content) {
    var wrap = document.createElement("div");
    wrap.className = "message " + role;
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = content;
    bubble.append(who, text);
    wrap.appendChild(bubble);
    return wrap;
  }

  function setStatus(node, status, error) {
    var badge = node.querySelector(".badge");
    if (!badge) {
      badge = document.createElement("span");
      node.querySelector(".bubble").append(document.createElement("br"), badge);
    }
    badge.className = "badge " + status;
    badge.textContent = status === "partial" ? "Stopped before the end" : "Error" + (error ? ": " + error : "");
  }

  function scrollToEnd() {
    el.messages.scrollTop = el.messages.scrollHeight;
  }

  // --- sending and streaming ------------------------------------------------------------------------------

  function setupComposer() {
    el.composer.addEventListener("submit", function (event) { event.preventDefault(); send(); });
    el.composerInput.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
    });
    el.composerInput.addEventListener("input", autosize);
    el.stopButton.addEventListener("click", function () { if (state.streaming) state.streaming.abort(); });
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

  function send() {
    var text = el.composerInput.value.trim();
    if (!text || state.streaming) return;
    hideNotice();
    if (el.welcome.parentNode) el.welcome.remove();
    el.composerInput.value = "";
    autosize();

    el.messages.appendChild(messageNode("user", text));
    var answer = messageNode("assistant", "");
    answer.classList.add("streaming");
    el.messages.appendChild(answer);
    scrollToEnd();

    var body = {message: text, stream: true};
    var chatId = state.chatId || state.pendingId;
    if (chatId) body.chat_id = chatId;
    if (el.providerSelect.value) body.provider = el.providerSelect.value;

    var controller = new AbortController();
    state.streaming = controller;
    setBusy(true);
    var textNode = answer.querySelector(".text");
    var finished = false;

    fetch("/chat", {method: "POST", headers: {"Content-Type": "application/json", "Accept": "text/event-stream"},
                    body: JSON.stringify(body), signal: controller.signal})
      .then(function (response) {
        var id = response.headers.get("X-Chat-ID");
        if (!response.ok || !response.body) {
          return readJson(response).then(function () { throw new Error("unexpected answer"); });
        }
        if (id) adoptChat(id, text);
        return readEvents(response.body, function (event) {
          if (event.type === "delta") {
            textNode.textContent += event.content;
            scrollToEnd();
          } else if (event.type === "done") {
            finished = true;
            if (event.chat_id) adoptChat(event.chat_id, text);
          } else if (event.type === "error") {
            finished = true;
            setStatus(answer, "error", event.message);
            if (event.chat_id) adoptChat(event.chat_id, text);
          }
        });
      })
      .then(function () {
        if (!finished) setStatus(answer, "partial");
      })
      .catch(function (error) {
        if (error.name === "AbortError") { setStatus(answer, "partial"); return; }
        if (error.status === 409) {
          answer.previousSibling.remove();
          answer.remove();
          el.composerInput.value = text;
          showNotice("This chat is still answering another message. Send again when it has finished.");
          return;
        }
        if (error.body && error.body.error && error.body.error.chat_id) adoptChat(error.body.error.chat_id, text);
        setStatus(answer, "error", error.message);
      })
      .then(function () {
        answer.classList.remove("streaming");
        state.streaming = null;
        setBusy(false);
        refreshCurrent();
        el.composerInput.focus();
      });
  }

  function adoptChat(id, firstMessage) {
    if (state.chatId === id) return;
    state.chatId = id;
    state.pendingId = null;
    var summary = state.chats[id] || {title: firstMessage.slice(0, 80), last_updated: new Date().toISOString()};
    upsertChat(id, summary);
    history.replaceState(null, "", "#chat=" + encodeURIComponent(id));
    el.chatTitle.textContent = summary.title || id;
    el.chatMeta.textContent = id;
  }

  function refreshCurrent() {
    var id = state.chatId;
    if (!id) return;
    fetch("/chat/history/" + encodeURIComponent(id)).then(readJson).then(function (body) {
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
        try { onEvent(JSON.parse(data)); } catch (e) { /* not one of ours */ }
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
