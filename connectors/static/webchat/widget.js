/*
 * Threadline web chat widget. Plain JavaScript, no dependencies, no build step.
 *
 * Embed on any page with one tag:
 *
 *   <script src="https://bot.example.com/webhooks/webchat/widget.js" defer></script>
 *
 * Options, as data- attributes on that tag or passed to ThreadlineChat.init({...}):
 *   data-customer-ref / customerRef   the logged-in customer's reference ...
 *   data-signature    / signature     ... and its HMAC from your backend (signed identity) ...
 *   data-signature-expires / signatureExpires   ... and the unix time it expires (signed with it)
 *   data-title        / title         header title (default: the server's)
 *   data-mode         / mode          "bubble" (floating, default) or "page" (fills the page)
 *   data-open         / open          "true" to start open
 *   data-server       / server        base URL of /webhooks/webchat/ (default: where this file is)
 *   data-auto-init="false"            wait for ThreadlineChat.init() instead of starting at once
 *
 * API: ThreadlineChat.init(options), .open(), .close(), .send(text), .reset() (call on logout:
 * starts a new anonymous conversation), .visitorId().
 *
 * Talks REST (POST webhook) and listens to server-sent events (GET events) for messages the
 * bot sends on its own. The server issues the visitor's token (POST session) on first use;
 * it is kept in localStorage and proves this browser holds its conversation. Everything
 * the bot says is rendered with DOM text nodes: no HTML from the server is ever interpreted.
 */
(function () {
  "use strict";

  if (window.ThreadlineChat && window.ThreadlineChat.version) {
    return; // loaded twice
  }

  var script = document.currentScript;
  var STORAGE_KEY = "threadline-chat:v2";
  var HISTORY_LIMIT = 100;
  var LINK_CODE_RE = /\bLINK (\d{6})\b/;
  var RETRY_DELAYS_MS = [800, 2000];

  var state = {
    mounted: false,
    options: {},
    base: "",
    config: {},
    store: null,
    signature: null,
    els: {},
    queue: Promise.resolve(),
    pending: 0,
    events: null,
    retries: {},
    started: false,
  };

  // ------------------------------------------------------------------ storage

  function memoryStorage() {
    var data = {};
    return {
      getItem: function (key) { return Object.prototype.hasOwnProperty.call(data, key) ? data[key] : null; },
      setItem: function (key, value) { data[key] = String(value); },
    };
  }

  var storage = (function () {
    try {
      var probe = "__threadline__";
      window.localStorage.setItem(probe, probe);
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (e) {
      return memoryStorage(); // storage disabled: the chat still works for this page view
    }
  })();

  function load() {
    var stored = null;
    try {
      stored = JSON.parse(storage.getItem(STORAGE_KEY) || "null");
    } catch (e) {
      stored = null;
    }
    if (!stored || typeof stored !== "object") stored = {};
    if (!Array.isArray(stored.history)) stored.history = [];
    return stored;
  }

  function save() {
    state.store.history = state.store.history.slice(-HISTORY_LIMIT);
    try {
      storage.setItem(STORAGE_KEY, JSON.stringify(state.store));
    } catch (e) {
      /* quota exceeded: keep going in memory */
    }
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // --------------------------------------------------------------------- DOM

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function icon(path, className) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    if (className) svg.setAttribute("class", className);
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.appendChild(p);
    return svg;
  }

  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z",
    close: "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z",
    send: "M3 20.5V14l9-2-9-2V3.5L22 12z",
  };

  function isHttpUrl(value) {
    return typeof value === "string" && /^https?:\/\/[^\s]+$/i.test(value);
  }

  function link(href, label, className) {
    return el("a", { href: href, target: "_blank", rel: "noopener noreferrer nofollow", class: className, text: label });
  }

  // ---------------------------------------------------------------- markdown
  // A light subset: **bold**, *italic* / _italic_, `code`, [label](https://...), bare
  // https:// links and line breaks. Built from text nodes, so nothing is ever parsed as HTML.

  var INLINE_RE = /\*\*([^*\n]+?)\*\*|__([^_\n]+?)__|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|(https?:\/\/[^\s<>"']+)|`([^`\n]+)`|\*([^*\n]+)\*|_([^_\n]+)_/g;
  var TRAILING_PUNCT_RE = /[.,;:!?)\]]+$/;

  function isWordChar(ch) {
    return !!ch && /[A-Za-z0-9_]/.test(ch);
  }

  function renderInline(text, parent) {
    var re = new RegExp(INLINE_RE.source, "g");
    var last = 0;
    var m;
    while ((m = re.exec(text))) {
      var start = m.index;
      var end = start + m[0].length;
      var italic = m[7] !== undefined || m[8] !== undefined;
      if (italic && (isWordChar(text.charAt(start - 1)) || isWordChar(text.charAt(end)))) {
        re.lastIndex = start + 1; // snake_case or 2*3*4: not emphasis
        continue;
      }
      if (start > last) parent.appendChild(document.createTextNode(text.slice(last, start)));
      if (m[1] !== undefined || m[2] !== undefined) {
        var strong = el("strong");
        renderInline(m[1] !== undefined ? m[1] : m[2], strong);
        parent.appendChild(strong);
      } else if (m[3] !== undefined) {
        parent.appendChild(link(m[4], m[3]));
      } else if (m[5] !== undefined) {
        var url = m[5].replace(TRAILING_PUNCT_RE, "");
        parent.appendChild(link(url, url));
        end = start + url.length;
        re.lastIndex = end;
      } else if (m[6] !== undefined) {
        parent.appendChild(el("code", { text: m[6] }));
      } else {
        var em = el("em");
        renderInline(m[7] !== undefined ? m[7] : m[8], em);
        parent.appendChild(em);
      }
      last = end;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderText(text, parent) {
    String(text).split("\n").forEach(function (line, i) {
      if (i > 0) parent.appendChild(el("br"));
      renderInline(line.replace(/^\s*[-*]\s+/, "\u2022 "), parent);
    });
  }

  // --------------------------------------------------------------- rendering

  function title() {
    return state.options.title || state.config.title || "Chat";
  }

  function deepLinks(code) {
    var links = [];
    if (state.config.telegram_bot) {
      links.push(link("https://t.me/" + encodeURIComponent(state.config.telegram_bot) + "?start=" + code,
        "Open Telegram", "tl-deeplink tl-telegram"));
    }
    if (state.config.whatsapp_number) {
      links.push(link("https://wa.me/" + encodeURIComponent(state.config.whatsapp_number) + "?text=" +
        encodeURIComponent("LINK " + code), "Open WhatsApp", "tl-deeplink tl-whatsapp"));
    }
    return links.length ? el("div", { class: "tl-deeplinks" }, links) : null;
  }

  function renderButtons(entry, index) {
    var active = !entry.closed && entry.chosen === undefined;
    var group = el("div", { class: "tl-choices", role: "group", "aria-label": "Suggested replies" });
    entry.buttons.forEach(function (button, i) {
      var label = String(button.title || button.payload || "");
      var url = button.url || (button.type === "web_url" ? button.payload : null);
      if (isHttpUrl(url)) {
        group.appendChild(link(url, label, "tl-choice tl-choice-link"));
        return;
      }
      group.appendChild(el("button", {
        type: "button",
        class: "tl-choice" + (entry.chosen === i ? " tl-chosen" : ""),
        disabled: !active,
        "aria-pressed": entry.chosen === i ? "true" : null,
        text: label,
        onclick: function () { choose(index, i); },
      }));
    });
    return group;
  }

  function renderEntry(entry, index) {
    if (entry.from === "notice") {
      var notice = el("div", { class: "tl-notice", role: "status" }, [entry.text]);
      if (entry.retry && state.retries[entry.retry]) {
        notice.appendChild(el("button", {
          type: "button", class: "tl-retry", text: "Try again",
          onclick: function () { retry(index); },
        }));
      }
      return notice;
    }
    var bubble = el("div", { class: "tl-bubble" });
    if (entry.from === "user") {
      bubble.textContent = entry.text;
    } else {
      if (entry.text) renderText(entry.text, bubble);
      if (isHttpUrl(entry.image)) {
        bubble.appendChild(el("img", { src: entry.image, alt: "", loading: "lazy", class: "tl-image" }));
      }
    }
    var row = el("div", { class: "tl-msg tl-" + (entry.from === "user" ? "user" : "bot") }, [bubble]);
    if (entry.from === "bot" && entry.buttons && entry.buttons.length) row.appendChild(renderButtons(entry, index));
    if (entry.linkCode) {
      var links = deepLinks(entry.linkCode);
      if (links) row.appendChild(links);
    }
    return row;
  }

  function renderLog() {
    var log = state.els.log;
    if (!log) return;
    while (log.firstChild) log.removeChild(log.firstChild);
    var history = state.store.history;
    if (!history.length) {
      log.appendChild(el("div", { class: "tl-empty" }, [
        el("p", { class: "tl-empty-title", text: "Hi there!" }),
        el("p", { text: "Ask about an order, an appointment or a problem with your device. We answer right away." }),
      ]));
    }
    history.forEach(function (entry, i) { log.appendChild(renderEntry(entry, i)); });
    log.appendChild(state.els.typing);
    state.els.typing.hidden = state.pending === 0;
    scrollDown();
  }

  function scrollDown() {
    var log = state.els.log;
    if (log) log.scrollTop = log.scrollHeight;
  }

  function renderChrome() {
    if (!state.mounted) return;
    state.els.title.textContent = title();
    state.els.panel.setAttribute("aria-label", title());
    var unread = state.store.unread || 0;
    state.els.badge.hidden = unread === 0;
    state.els.badge.textContent = unread > 9 ? "9+" : String(unread);
  }

  function addEntry(entry) {
    state.store.history.push(entry);
    if (state.store.history.length > HISTORY_LIMIT) state.store.history.splice(0, state.store.history.length - HISTORY_LIMIT);
    save();
    renderLog();
  }

  function addBotMessage(reply) {
    if (!reply || typeof reply !== "object") return;
    var attachment = reply.attachment;
    var image = reply.image || (attachment && attachment.type === "image" && attachment.payload && attachment.payload.src);
    var text = typeof reply.text === "string" ? reply.text : null;
    image = isHttpUrl(image) ? image : null;
    if (!text && !image) return; // custom payloads are for other clients
    var entry = { from: "bot", text: text, image: image || null };
    if (Array.isArray(reply.buttons) && reply.buttons.length) entry.buttons = reply.buttons;
    var code = text && LINK_CODE_RE.exec(text);
    if (code) entry.linkCode = code[1];
    addEntry(entry);
    if (!state.store.open && state.options.mode !== "page") {
      state.store.unread = (state.store.unread || 0) + 1;
      save();
      renderChrome();
    }
  }

  // ----------------------------------------------------------------- sending

  function closeChoices() {
    state.store.history.forEach(function (entry) {
      if (entry.buttons) entry.closed = true;
    });
  }

  function send(text, shownAs) {
    text = String(text || "").trim();
    if (!text || !state.mounted) return;
    closeChoices();
    addEntry({ from: "user", text: shownAs || text });
    var body = {
      message: text,
      message_id: randomId(),
      metadata: { locale: navigator.language || null },
    };
    if (state.store.ref && state.signature) {
      body.customer_ref = state.store.ref;
      body.signature = state.signature;
      body.expires = state.signatureExpires;
    }
    enqueue(body);
  }

  /** The visitor token, asked from the server the first time (a promise). */
  function ensureVisitor() {
    if (state.store.visitorToken) return Promise.resolve(state.store.visitorToken);
    return fetch(state.base + (state.config.session_path || "session"), { method: "POST" })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (issued) {
        state.store.visitorToken = issued.sender;
        save();
        return issued.sender;
      });
  }

  function enqueue(body) {
    state.queue = state.queue.then(function () {
      return ensureVisitor().then(function (token) {
        body.sender = token;
        connectEvents();
        return post(body, 0);
      }, function () {
        addEntry({ from: "notice", text: "We couldn't reach the chat service." });
      });
    });
  }

  function setPending(delta) {
    state.pending += delta;
    if (state.els.typing) {
      state.els.typing.hidden = state.pending === 0;
      scrollDown();
    }
  }

  function post(body, attempt) {
    setPending(1);
    return fetch(state.base + "webhook", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (res) {
      if (res.status >= 400 && res.status < 500) {
        var err = new Error("refused");
        err.final = true;
        throw err;
      }
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).then(function (replies) {
      setPending(-1);
      (Array.isArray(replies) ? replies : []).forEach(addBotMessage);
    }, function (err) {
      setPending(-1);
      if (!err.final && attempt < RETRY_DELAYS_MS.length) {
        // Same message_id: the server runs it once however often it arrives.
        return new Promise(function (resolve) { setTimeout(resolve, RETRY_DELAYS_MS[attempt]); })
          .then(function () { return post(body, attempt + 1); });
      }
      if (err.final) {
        addEntry({ from: "notice", text: "That message could not be sent." });
      } else {
        state.retries[body.message_id] = body;
        addEntry({ from: "notice", text: "We couldn't reach the chat service.", retry: body.message_id });
      }
    });
  }

  function retry(index) {
    var entry = state.store.history[index];
    var body = entry && state.retries[entry.retry];
    if (!body) return;
    delete state.retries[entry.retry];
    state.store.history.splice(index, 1);
    save();
    renderLog();
    enqueue(body);
  }

  function choose(entryIndex, buttonIndex) {
    var entry = state.store.history[entryIndex];
    if (!entry || !entry.buttons || entry.closed || entry.chosen !== undefined) return;
    var button = entry.buttons[buttonIndex];
    entry.chosen = buttonIndex;
    send(button.payload || button.title, button.title || button.payload);
  }

  function askForLinkCode() {
    open();
    send(state.config.link_payload || "/link_channel", "Continue on another app");
  }

  // ------------------------------------------------------------ live events

  function connectEvents() {
    if (state.events || !window.EventSource || !state.store.visitorToken) return;
    var source = new EventSource(state.base + "events?sender=" + encodeURIComponent(state.store.visitorToken));
    source.addEventListener("bot", function (event) {
      try {
        addBotMessage(JSON.parse(event.data));
      } catch (e) {
        /* ignore a malformed event */
      }
    });
    state.events = source;
  }

  function disconnectEvents() {
    if (state.events) state.events.close();
    state.events = null;
  }

  // ---------------------------------------------------------- open / close

  function open() {
    if (!state.mounted) return;
    if (state.options.mode !== "page") state.store.open = true;
    state.store.unread = 0;
    save();
    state.els.panel.hidden = false;
    state.els.launcher.setAttribute("aria-expanded", "true");
    state.els.launcher.setAttribute("aria-label", "Close chat");
    state.els.launcher.classList.add("tl-is-open");
    renderChrome();
    scrollDown();
    connectEvents();
    state.els.input.focus();
  }

  function close() {
    if (!state.mounted || state.options.mode === "page") return;
    state.store.open = false;
    save();
    state.els.panel.hidden = true;
    state.els.launcher.setAttribute("aria-expanded", "false");
    state.els.launcher.setAttribute("aria-label", "Open chat");
    state.els.launcher.classList.remove("tl-is-open");
    state.els.launcher.focus();
  }

  // ------------------------------------------------------------------ mount

  function mount() {
    var host = el("div", { id: "threadline-chat" });
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var mode = state.options.mode === "page" ? "page" : "bubble";

    var els = state.els;
    els.title = el("h2", { class: "tl-title" });
    els.input = el("textarea", {
      class: "tl-input", rows: "1", placeholder: "Type a message\u2026", "aria-label": "Message", maxlength: "4096",
    });
    els.typing = el("div", { class: "tl-typing", "aria-label": "Typing" }, [el("span"), el("span"), el("span")]);
    els.log = el("div", { class: "tl-log", role: "log", "aria-live": "polite" });
    els.linkBar = el("div", { class: "tl-linkbar" }, [
      el("button", { type: "button", class: "tl-link-channel", text: "Continue on WhatsApp / Telegram", onclick: askForLinkCode }),
    ]);
    var closeButton = el("button", { type: "button", class: "tl-close", "aria-label": "Close chat", onclick: close }, [icon(ICONS.close)]);
    var form = el("form", { class: "tl-composer" }, [
      els.input,
      el("button", { type: "submit", class: "tl-send", "aria-label": "Send" }, [icon(ICONS.send)]),
    ]);
    els.panel = el("section", { class: "tl-panel", role: "dialog", hidden: true }, [
      el("header", { class: "tl-header" }, [
        el("div", { class: "tl-heading" }, [els.title, el("p", { class: "tl-subtitle", text: "We usually reply right away" })]),
        mode === "page" ? null : closeButton,
      ]),
      els.linkBar,
      els.log,
      form,
    ]);
    els.badge = el("span", { class: "tl-badge", hidden: true });
    els.launcher = el("button", {
      type: "button", class: "tl-launcher", "aria-label": "Open chat", "aria-expanded": "false",
      onclick: function () { if (state.store.open) close(); else open(); },
    }, [icon(ICONS.chat, "tl-icon-chat"), icon(ICONS.close, "tl-icon-close"), els.badge]);

    root.appendChild(el("link", { rel: "stylesheet", href: state.base + "widget.css" }));
    root.appendChild(el("div", { class: "tl", "data-mode": mode }, [mode === "page" ? null : els.launcher, els.panel]));

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = els.input.value;
      els.input.value = "";
      autosize();
      send(text);
    });
    els.input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
      } else if (event.key === "Escape") {
        close();
      }
    });
    function autosize() {
      els.input.style.height = "auto";
      els.input.style.height = Math.min(els.input.scrollHeight, 120) + "px";
    }
    els.input.addEventListener("input", autosize);

    document.body.appendChild(host);
    state.mounted = true;
    renderChrome();
    renderLog();
    if (mode === "page" || state.store.open || state.options.open) open();
    if (state.store.history.length && state.store.visitorToken) connectEvents();
  }

  function loadConfig() {
    return fetch(state.base + "config").then(function (res) { return res.ok ? res.json() : {}; })
      .then(function (config) {
        state.config = config || {};
        renderChrome();
        renderLog();
      }, function () { /* offline: defaults */ });
  }

  // ------------------------------------------------------------------- API

  function serverBase(options) {
    var base = options.server || (script && script.src ? new URL(".", script.src).href : "");
    if (!base) throw new Error("ThreadlineChat: set the server option (the URL of /webhooks/webchat/)");
    return base.charAt(base.length - 1) === "/" ? base : base + "/";
  }

  function applyIdentity(ref, signature, expires) {
    var store = state.store;
    ref = ref || null;
    if (store.ref && store.ref !== ref) {
      // Someone else logged in, or the customer logged out: never show them this conversation.
      startOver();
    }
    store.ref = ref;
    state.signature = ref ? signature || null : null;
    state.signatureExpires = ref && expires ? Number(expires) : null;
    save();
  }

  function startOver() {
    disconnectEvents();
    state.store = { visitorToken: null, ref: null, history: [], open: state.store && state.store.open };
    state.retries = {};
    save();
    renderLog();
  }

  function whenReady(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  /** Start the widget, or update its options (a new signed identity) once started. */
  function init(options) {
    options = options || {};
    if (!state.store) state.store = load();
    Object.keys(options).forEach(function (key) {
      if (options[key] !== undefined) state.options[key] = options[key];
    });
    applyIdentity(state.options.customerRef, state.options.signature, state.options.signatureExpires);
    if (state.started) {
      renderChrome();
      return api;
    }
    state.started = true;
    state.base = serverBase(state.options);
    whenReady(function () {
      mount();
      loadConfig();
    });
    return api;
  }

  function optionsFromScript() {
    var data = (script && script.dataset) || {};
    var options = {
      customerRef: data.customerRef,
      signature: data.signature,
      signatureExpires: data.signatureExpires,
      title: data.title,
      mode: data.mode,
      open: data.open === "true",
      server: data.server,
    };
    Object.keys(options).forEach(function (key) { if (options[key] === undefined) delete options[key]; });
    return options;
  }

  var api = {
    version: "1",
    init: init,
    open: open,
    close: close,
    send: function (text) { open(); send(text); },
    reset: function () {
      state.options.customerRef = null;
      state.options.signature = null;
      state.options.signatureExpires = null;
      startOver();
    },
    visitorId: function () {
      var token = state.store && state.store.visitorToken;
      return token ? token.split(".")[0] : null;
    },
  };
  window.ThreadlineChat = api;
  state.options = optionsFromScript(); // init() options override the tag's

  if (!script || script.dataset.autoInit !== "false") {
    // A tick later, so a page that calls init() right after this tag wins.
    setTimeout(function () { if (!state.started) init({}); }, 0);
  }
})();
