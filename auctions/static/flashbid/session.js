/* The live session page.

   - Countdown on the server's clock (FlashBidClock, synced from the snapshot and the meta endpoint).
   - The bid form posts to the JSON API (session cookie + X-CSRFToken); errors are shown by their
     machine code through BID_ERRORS.
   - The board arrives over the WebSocket /ws/sessions/<id>/: "snapshot" on connect, "board" when
     it changes, "status" when the session ends, "results" when it is settled, and, for a signed-in
     bidder (the socket carries the session cookie), "you" when their own is_winning changes (the
     outbid notice, also as a browser notification when the tab is hidden and the user allowed
     it); other types are ignored.
   - The end is the session's effective end: soft close moves it later, and every snapshot, board
     and meta carries it; the countdown follows and says by how much it was extended.
   - Next to the bid box: the price to win ("bid at least 123.45 to be winning now") from the bid
     answer, bids/me and the "you" frames; a bid above 5x the highest price (or the floor, before
     any bid) asks for confirmation first.
   - While the socket is down the page says so, reconnects with backoff, and polls meta-first:
     the tiny meta endpoint every 2.5 s (15 s when the tab is hidden), the board only when its
     version changed, my standing only when the board changed and I am not on its first page. */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("session-config").textContent);
  const clock = window.FlashBidClock;
  const $ = (id) => document.getElementById(id);

  // Friendly text per error code of POST /api/sessions/{id}/bids (flashbid.errors.ErrorCode).
  const BID_ERRORS = {
    invalid_price: "Enter a price like 123.45: more than 0, with at most 2 decimals.",
    below_upset_price: "Bids start at the floor price of {upset_price}.",
    not_higher: "A new bid must be higher than your current bid{my_price}.",
    session_not_started: "Bidding has not opened yet.",
    session_ended: "Bidding has closed.",
    rate_limited: "You are bidding too fast. Try again in {retry_after} s.",
    not_authenticated: "You are logged out. Log in again to bid.",
    forbidden: "This page's security token is out of date. Reload the page and try again.",
    not_found: "This session no longer exists.",
    payload_too_large: "That bid is too large to send.",
    invalid: "That bid could not be read. Enter a price like 123.45.",
    unavailable: "Bidding is briefly unavailable. Try again in a moment.",
  };
  const NETWORK_ERROR = "Could not reach the server. Check your connection and try again.";

  const TOP_SIZE = 10; // the socket's snapshot size
  const PAGE_SIZE = 25; // the full leaderboard's pages
  const POLL_VISIBLE_MS = 2500;
  const POLL_HIDDEN_MS = 15000;
  // While the socket is up it brings every change; a slow meta check still catches a push lost on
  // the way (the channel layer is pub/sub: at most once) and the results of a settled session.
  const POLL_LIVE_MS = 30000;
  const POLL_LIVE_ENDED_MS = 5000;
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 15000;
  const MY_BID_MIN_GAP_MS = 2000;
  const STATUS_ORDER = ["scheduled", "active", "ended", "settled"];

  const startMs = Date.parse(config.start_time);
  let endMs = Date.parse(config.end_time); // the effective end: soft close moves it later
  const scheduledEndMs = Date.parse(config.scheduled_end_time);
  // A bid this many times the current highest price (or the floor) asks "are you sure?" first.
  const CONFIRM_FACTOR = 5;

  const state = {
    status: null,
    version: -1,
    boardStatus: null,
    boardEtag: null,
    board: null,
    myBid: null,
    myBidKnown: false,
    myBidTimer: null,
    myBidFetchedAt: 0,
    results: null,
    fetchingResults: false,
    done: false,
    socket: null,
    live: false,
    reconnectDelay: RECONNECT_MIN_MS,
    reconnectTimer: null,
    pollTimer: null,
    pollAt: Infinity,
    page: 1,
    totalPages: 1,
    pageTimer: null,
    pageLoadedAt: 0,
    submitting: false,
    // The is_winning the page last knew (bid answer, bids/me, "you" frames): an outbid notice is
    // a change from true to false.
    youWinning: null,
    youTimer: null,
    youAskedAt: 0,
  };

  // --- helpers ---------------------------------------------------------------------------------

  // One look for every number: prices "1,234.50 USD" (as the server's templates: the `money`
  // filter), scores with grouping and exactly 4 decimals.
  function fmtScore(score) {
    return score == null ? "–"
      : Number(score).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  }

  function fmtPrice(price) {
    if (price == null) return "–";
    const amount = Number(price).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return `${amount} ${config.currency}`;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, name) => (values[name] == null ? "" : String(values[name])));
  }

  async function getJson(url, headers) {
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: Object.assign({ Accept: "application/json" }, headers || {}),
      });
      let body = null;
      if (response.status !== 304) {
        try {
          body = await response.json();
        } catch (error) {
          body = null;
        }
      }
      return { status: response.status, body, headers: response.headers };
    } catch (error) {
      return { status: 0, body: null, headers: new Headers() };
    }
  }

  function csrfToken() {
    const name = config.csrf_cookie || "csrftoken";
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    const input = document.querySelector("#bid-form [name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // --- status and countdown ----------------------------------------------------------------------

  function setStatus(status) {
    // The lifecycle only moves forward; a late or stale message never moves it back.
    if (STATUS_ORDER.indexOf(status) < 0) return;
    if (state.status && STATUS_ORDER.indexOf(status) <= STATUS_ORDER.indexOf(state.status)) return;
    state.status = status;
    const badge = $("status-badge");
    badge.textContent = status;
    badge.dataset.status = status;
    badge.className = `badge badge-${status}`;
    const input = $("bid-price");
    const button = $("bid-submit");
    if (input && button) {
      const open = status === "active";
      input.disabled = !open;
      button.disabled = !open || state.submitting;
      button.textContent = status === "scheduled" ? "Not open yet" : open ? "Place bid" : "Closed";
    }
    if (status !== "active" && status !== "scheduled" && $("bid-ok")) $("bid-ok").hidden = true;
    if (status === "ended" && !state.results) {
      $("results-panel").hidden = false;
      $("results-body").innerHTML = '<p id="settling" class="muted">Bidding has closed. Settling the results…</p>';
    }
    if (status === "ended" || status === "settled") schedulePoll(0); // look for the results now
  }

  // The effective end moved (a soft-close extension, from a frame or the meta): the countdown and
  // "Closes" follow; a page that had already counted down to "ended" is open again.
  function moveEnd(iso) {
    const ms = Date.parse(iso);
    if (Number.isNaN(ms) || ms === endMs || state.status === "settled") return;
    const later = ms > endMs;
    endMs = ms;
    const closes = $("closes");
    if (closes) {
      closes.setAttribute("datetime", iso);
      closes.textContent = clock.local(ms);
    }
    if (!later) return;
    // How far the bids have moved the end, all told, from the one the admin set.
    const note = $("extended");
    note.textContent = `Extended by ${clock.duration(endMs - scheduledEndMs)}`;
    note.hidden = false;
    if (state.status === "ended" && clock.now() < endMs) {
      state.status = null; // the one step back the lifecycle allows: the end moved past now
      $("results-panel").hidden = true;
      setStatus("active");
    }
  }

  function tick() {
    const now = clock.now();
    if (endMs > scheduledEndMs && $("extended").hidden) {
      $("extended").textContent = `Extended by ${clock.duration(endMs - scheduledEndMs)}`; // extended before this page
      $("extended").hidden = false;
    }
    let text;
    if (state.status === "settled") text = "Settled";
    else if (now < startMs) text = `Opens in ${clock.duration(startMs - now)}`;
    else if (now < endMs) text = `Closes in ${clock.duration(endMs - now)}`;
    else text = "Closed";
    $("countdown").textContent = text;
    setStatus(now < startMs ? "scheduled" : now < endMs ? "active" : "ended");
  }

  // --- the board ------------------------------------------------------------------------------

  function renderRows(tbody, entries, emptyText) {
    const rows = [];
    for (const entry of entries) {
      const tr = document.createElement("tr");
      tr.dataset.userId = entry.user_id;
      if (entry.is_winner) tr.classList.add("winner");
      const mine = config.user && entry.user_id === config.user.id;
      if (mine) tr.classList.add("mine");
      const cells = [
        String(entry.rank),
        mine ? `${entry.username} (you)` : entry.username,
        fmtPrice(entry.price),
        fmtScore(entry.score),
        entry.is_winner ? "wins" : "",
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 2 || i === 3) td.className = "num";
        if (i === 1) td.className = "bidder";
        if (i === 4 && text) td.innerHTML = '<span class="badge badge-win">wins</span>';
        tr.appendChild(td);
      });
      rows.push(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.innerHTML = '<td colspan="5"></td>';
      tr.firstChild.textContent = emptyText;
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function applyBoard(board) {
    if (!board || typeof board.version !== "number") return;
    if (board.version < state.version) return; // older than what is shown
    const changed = board.version !== state.version || board.status !== state.boardStatus;
    state.version = board.version;
    state.boardStatus = board.status;
    state.board = board;
    $("total-bidders").textContent = board.total_bidders;
    $("highest-price").textContent = fmtPrice(board.highest_price);
    const threshold = $("threshold");
    threshold.textContent = board.threshold_score == null ? "none yet" : fmtScore(board.threshold_score);
    threshold.title = board.threshold_score == null
      ? `Fewer than ${board.inventory} bidders: every bid wins for now.` : "";
    renderRows($("board-top").tBodies[0], board.entries || [], "No bids yet.");
    if (board.status === "settled") fetchResults();
    else setStatus(board.status);
    if (changed) {
      refreshMyStanding(board);
      refreshPageSoon();
    }
  }

  async function refreshBoard() {
    const headers = state.boardEtag ? { "If-None-Match": state.boardEtag } : {};
    const response = await getJson(`${config.urls.leaderboard}?page=1&page_size=${TOP_SIZE}`, headers);
    if (response.status !== 200) return; // 304: unchanged
    state.boardEtag = response.headers.get("ETag");
    applyBoard(response.body);
  }

  // --- my standing ----------------------------------------------------------------------------

  function setMyBid(bid, totalBidders) {
    state.myBidKnown = true;
    state.myBid = bid;
    const panel = $("my-standing");
    if (!panel) return;
    $("my-none").hidden = Boolean(bid);
    $("my-bid").hidden = !bid;
    panel.dataset.hasBid = bid ? "yes" : "no";
    if (!bid) return;
    $("my-price").textContent = fmtPrice(bid.price);
    $("my-score").textContent = fmtScore(bid.score);
    $("my-rank").textContent = bid.rank;
    $("my-of").textContent = totalBidders ? ` of ${totalBidders}` : "";
    if ("price_to_win" in bid) setHint(bid.price_to_win, bid.is_winning);
    const winning = $("my-winning");
    winning.textContent = bid.is_winning ? "Winning" : `Outbid: not in the top ${config.inventory}`;
    winning.className = bid.is_winning ? "yes" : "no";
    panel.dataset.winning = bid.is_winning ? "yes" : "no";
  }

  function refreshMyStanding(board) {
    if (!config.user) return;
    const mine = (board.entries || []).find((entry) => entry.user_id === config.user.id);
    if (mine) {
      setMyBid({ price: mine.price, score: mine.score, rank: mine.rank, is_winning: mine.is_winner },
        board.total_bidders);
      if (mine.is_winner) return;
    }
    // Not winning (or not on the first page): the price to win moved with the board.
    if (board.status === "active") standingSoon();
  }

  // My standing again: over the socket while it is live (a "you" request answered with a "you"
  // frame: no HTTP request, no 404 for a bidder without a bid), else from bids/me.
  function standingSoon() {
    const socket = state.socket;
    if (!state.live || !socket || socket.readyState !== WebSocket.OPEN) {
      fetchMyBidSoon();
      return;
    }
    if (state.youTimer) return;
    const wait = Math.max(0, state.youAskedAt + MY_BID_MIN_GAP_MS - Date.now());
    state.youTimer = setTimeout(() => {
      state.youTimer = null;
      state.youAskedAt = Date.now();
      if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send('{"type": "you"}');
    }, wait);
  }

  // "Bid at least 123.45 to be winning now", or that the bidder is winning.
  function setHint(priceToWin, winning) {
    const hint = $("price-hint");
    const input = $("bid-price");
    if (!hint) return;
    if (winning) {
      hint.textContent = "You are winning now.";
      hint.dataset.winning = "yes";
      hint.hidden = false;
    } else if (priceToWin != null) {
      hint.textContent = `Bid at least ${fmtPrice(priceToWin)} to be winning now.`;
      hint.dataset.winning = "no";
      hint.hidden = false;
    } else {
      hint.hidden = true;
    }
    hint.dataset.price = priceToWin == null ? "" : priceToWin;
    if (input && priceToWin != null) input.placeholder = `at least ${priceToWin}`;
    else if (input && state.myBid) input.placeholder = `more than ${state.myBid.price}`;
  }

  // A "you" frame: the bidder's own standing changed (or the socket just signed in, or the page
  // asked for it).
  function onYou(you) {
    const was = state.youWinning;
    state.youWinning = you.is_winning;
    if (you.rank != null) {
      setMyBid({ price: you.price, score: you.score, rank: you.rank, is_winning: you.is_winning },
        state.board && state.board.total_bidders);
    } else {
      setMyBid(null);
    }
    setHint(you.price_to_win, you.is_winning === true);
    if (was === true && you.is_winning === false) {
      const text = you.price_to_win != null
        ? `You have been outbid. Bid at least ${fmtPrice(you.price_to_win)} to be winning again.`
        : "You have been outbid.";
      showNotice("outbid", text);
      notifyInBackground(text);
    } else if (was === false && you.is_winning === true) {
      showNotice("winning", "You are winning again.");
    }
  }

  function showNotice(kind, text) {
    const notice = $("you-notice");
    if (!notice) return;
    notice.dataset.kind = kind;
    notice.textContent = text;
    notice.hidden = false;
  }

  function notifyInBackground(text) {
    if (document.visibilityState !== "hidden" || !("Notification" in window)) return;
    if (Notification.permission !== "granted") return;
    try {
      new Notification($("product-name").textContent, { body: text, tag: `flashbid-${config.session_id}` });
    } catch (error) {
      // Some browsers allow notifications only from a service worker: the page's notice remains.
    }
  }

  function fetchMyBidSoon() {
    if (state.myBidTimer) return;
    const wait = Math.max(0, state.myBidFetchedAt + MY_BID_MIN_GAP_MS - Date.now());
    state.myBidTimer = setTimeout(async () => {
      state.myBidTimer = null;
      state.myBidFetchedAt = Date.now();
      const response = await getJson(config.urls.my_bid);
      if (response.status === 200) setMyBid(response.body, state.board && state.board.total_bidders);
      else if (response.status === 404) setNoBid(response.body);
    }, wait);
  }

  function setNoBid(body) {
    setMyBid(null);
    if (body && body.code === "no_bid") setHint(body.price_to_win, false);
  }

  // --- the full, paged leaderboard ------------------------------------------------------------

  async function loadPage(page) {
    const response = await getJson(`${config.urls.leaderboard}?page=${Math.max(1, page)}&page_size=${PAGE_SIZE}`);
    if (response.status !== 200) return;
    const board = response.body;
    state.pageLoadedAt = Date.now();
    state.page = board.page;
    state.totalPages = board.total_pages;
    renderRows($("board-page").tBodies[0], board.entries, board.page > 1 ? "Nobody on this page." : "No bids yet.");
    $("page-info").textContent = `Page ${board.page} of ${board.total_pages} · ${board.total_bidders} bidders`;
    $("page-prev").disabled = board.page <= 1;
    $("page-next").disabled = board.page >= board.total_pages;
  }

  function refreshPageSoon() {
    if (!$("full-board").open || state.pageTimer) return;
    const wait = Math.max(0, state.pageLoadedAt + 2000 - Date.now());
    state.pageTimer = setTimeout(() => {
      state.pageTimer = null;
      loadPage(state.page);
    }, wait);
  }

  // --- results ----------------------------------------------------------------------------------

  async function fetchResults() {
    if (state.results || state.fetchingResults) return;
    state.fetchingResults = true;
    try {
      const response = await getJson(config.urls.results);
      if (response.status === 200) showResults(response.body); // 409 not_settled: still settling
    } finally {
      state.fetchingResults = false;
    }
  }

  function showResults(results) {
    if (!results || state.results) return;
    state.results = results;
    setStatus("settled");
    tick();
    const body = $("results-body");
    body.replaceChildren();
    const summary = document.createElement("p");
    summary.id = "final-price";
    summary.className = "final";
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    summary.textContent = results.final_price == null
      ? "No bids: nothing was sold."
      : `Final price ${fmtPrice(results.final_price)} · ${plural(results.winners.length, "winner")} of `
        + plural(results.total_bidders, "bidder");
    body.appendChild(summary);
    if (config.user) {
      const outcome = document.createElement("p");
      outcome.id = "my-outcome";
      const won = results.winners.find((w) => w.user_id === config.user.id);
      outcome.className = won ? "outcome won" : "outcome";
      outcome.textContent = won
        ? `You won a unit (rank ${won.rank}) at the final price of ${fmtPrice(results.final_price)}.`
        : state.myBid ? "You did not win this time." : "You did not bid in this session.";
      body.appendChild(outcome);
      if (state.myBid) {
        const winning = $("my-winning");
        winning.textContent = won ? "Won" : "Did not win";
        winning.className = won ? "yes" : "no";
      }
    }
    if (results.winners.length) {
      const table = document.createElement("table");
      table.className = "board";
      table.id = "winners";
      table.innerHTML = '<thead><tr><th>#</th><th>Winner</th><th class="num">Price</th>'
        + '<th class="num">Score</th><th></th></tr></thead><tbody></tbody>';
      renderRows(table.tBodies[0], results.winners.map((w) => Object.assign({ is_winner: true }, w)), "");
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      wrap.appendChild(table);
      body.appendChild(wrap);
    }
    $("results-panel").hidden = false;
    // Nothing changes any more: stop listening.
    state.done = true;
    clearTimeout(state.pollTimer);
    clearTimeout(state.reconnectTimer);
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close(1000);
    setLive("final");
  }

  // --- the socket, and polling while it is down ---------------------------------------------------

  const LIVE_TEXT = {
    connecting: "Connecting to live updates…",
    live: "Live: the board updates as bids arrive.",
    reconnecting: "Live updates interrupted: reconnecting… Meanwhile the board is checked every few seconds.",
    gone: "This session no longer exists.",
    final: "Final: the session is settled.",
  };

  function setLive(name) {
    const el = $("live-status");
    el.dataset.state = name;
    el.textContent = LIVE_TEXT[name];
  }

  function connect() {
    state.reconnectTimer = null;
    if (state.done) return;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let socket;
    try {
      socket = new WebSocket(scheme + location.host + config.ws_path);
    } catch (error) {
      socketDown();
      return;
    }
    state.socket = socket;
    socket.addEventListener("message", (event) => {
      if (state.socket === socket) onMessage(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return; // replaced or closed on purpose
      state.socket = null;
      if (event.code === 4404) {
        state.done = true;
        setLive("gone");
        return;
      }
      socketDown();
    });
  }

  function socketDown() {
    const wasLive = state.live;
    state.live = false;
    if (state.done) return;
    setLive("reconnecting");
    schedulePoll(wasLive || !state.board ? 0 : pollInterval());
    const delay = state.reconnectDelay * (0.75 + Math.random() * 0.5);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, RECONNECT_MAX_MS);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.server_time) clock.sync(message.server_time);
    switch (message.type) {
      case "snapshot":
        // Only a snapshot proves the socket works: a server that accepts and drops us keeps backing off.
        state.live = true;
        state.reconnectDelay = RECONNECT_MIN_MS;
        setLive("live");
        if (message.end_time) moveEnd(message.end_time);
        applyBoard(message.board);
        reschedulePoll();
        break;
      case "board":
        if (message.end_time) moveEnd(message.end_time);
        applyBoard(message.board);
        break;
      case "you":
        onYou(message);
        break;
      case "status":
        setStatus(message.status);
        break;
      case "results":
        showResults(message.results);
        break;
      default:
        break; // a message type this page does not know
    }
  }

  function pollInterval() {
    if (state.live) return state.status === "ended" ? POLL_LIVE_ENDED_MS : POLL_LIVE_MS;
    return document.visibilityState === "hidden" ? POLL_HIDDEN_MS : POLL_VISIBLE_MS;
  }

  // Poll within `delay` ms: keeps an earlier poll already planned.
  function schedulePoll(delay) {
    if (state.done) return;
    const at = Date.now() + delay;
    if (state.pollTimer && state.pollAt <= at) return;
    clearTimeout(state.pollTimer);
    state.pollAt = at;
    state.pollTimer = setTimeout(pollNow, delay);
  }

  function reschedulePoll() {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    schedulePoll(pollInterval());
  }

  async function pollNow() {
    state.pollTimer = null;
    try {
      const sentAt = Date.now();
      const response = await getJson(config.urls.meta);
      if (response.status === 200) {
        const meta = response.body;
        clock.sync(meta.server_time, sentAt, Date.now());
        moveEnd(meta.end_time);
        if (config.user && !state.live && !state.myBidKnown) fetchMyBidSoon();
        if (meta.version !== state.version || meta.status !== state.boardStatus) await refreshBoard();
        if (meta.status === "settled") await fetchResults();
        else setStatus(meta.status);
      }
    } finally {
      if (!state.done && !state.pollTimer) schedulePoll(pollInterval());
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !state.live) schedulePoll(0);
  });

  // --- the bid form ---------------------------------------------------------------------------

  function showBidError(code, detail, retryAfter) {
    const el = $("bid-error");
    $("bid-ok").hidden = true;
    if (code == null) {
      el.hidden = true;
      el.textContent = "";
      delete el.dataset.code;
      return;
    }
    const template = code === "network" ? NETWORK_ERROR : BID_ERRORS[code];
    const text = template
      ? fill(template, {
        upset_price: fmtPrice(config.upset_price),
        my_price: state.myBid ? ` of ${fmtPrice(state.myBid.price)}` : "",
        retry_after: retryAfter || 1,
      })
      : detail || "Your bid was not accepted.";
    el.textContent = text;
    el.dataset.code = code;
    if (code === "not_authenticated") {
      const link = document.createElement("a");
      link.href = config.urls.login;
      link.textContent = " Log in";
      el.appendChild(link);
    }
    el.hidden = false;
  }

  function showBidOk(text) {
    const el = $("bid-ok");
    el.textContent = text;
    el.hidden = false;
  }

  const form = $("bid-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (state.submitting) return;
      const input = $("bid-price");
      const button = $("bid-submit");
      const price = input.value.trim();
      showBidError(null);
      if (!price) {
        showBidError("invalid_price");
        return;
      }
      const highest = state.board && state.board.highest_price != null ? state.board.highest_price : null;
      const reference = highest != null ? highest : config.upset_price;
      if (Number(price) > CONFIRM_FACTOR * Number(reference)) {
        const what = highest != null ? "the current highest price" : "the floor price";
        if (!window.confirm(`Your bid of ${fmtPrice(price)} is more than ${CONFIRM_FACTOR} times ${what} `
          + `(${fmtPrice(reference)}). `
          + "Place it anyway?")) return;
      }
      state.submitting = true;
      button.disabled = true;
      try {
        const response = await fetch(config.urls.bids, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify({ price }),
        });
        let body = null;
        try {
          body = await response.json();
        } catch (error) {
          body = null;
        }
        if (response.ok && body) {
          setMyBid(body, body.total_bidders);
          state.youWinning = body.is_winning; // my own bid: no notice for what I just did
          input.value = "";
          // The rank moves with every rival's bid: the panel above keeps it current.
          showBidOk(`Bid of ${fmtPrice(body.price)} accepted.`);
          if (!state.live) schedulePoll(0);
        } else {
          showBidError(body && body.code ? body.code : `http_${response.status}`, body && body.detail,
            response.headers.get("Retry-After"));
          if (body && body.code === "not_higher") setHint(body.price_to_win, body.price_to_win == null);
        }
      } catch (error) {
        showBidError("network");
      } finally {
        state.submitting = false;
        button.disabled = state.status !== "active";
      }
    });
  }

  // --- start ----------------------------------------------------------------------------------

  const fullBoard = $("full-board");
  fullBoard.addEventListener("toggle", () => {
    if (fullBoard.open) loadPage(state.page);
  });
  $("page-prev").addEventListener("click", () => loadPage(state.page - 1));
  $("page-next").addEventListener("click", () => loadPage(state.page + 1));

  setStatus(config.status);
  tick();
  setInterval(tick, 250);
  if (config.user) {
    // My standing comes with the socket's first "you" frame (it is signed in by the session
    // cookie); bids/me only while the socket is down (pollNow).
    const offer = $("notify-offer");
    if (offer && "Notification" in window && Notification.permission === "default") {
      offer.hidden = false;
      $("notify-enable").addEventListener("click", () => {
        Notification.requestPermission().finally(() => {
          offer.hidden = true;
        });
      });
    }
  }
  if (config.status === "settled") fetchResults();
  connect();
})();
