/* The server's clock as seen from this browser, and the pages' countdowns.
   The offset is learned from the server's own timestamps (the page's render time, the socket's
   snapshot, the meta endpoint), so a wrong clock on this device does not move a deadline. */
(function () {
  "use strict";
  let offsetMs = 0;

  const clock = {
    now() {
      return Date.now() + offsetMs;
    },
    /* serverIso: the server's time when it answered. sentAt/receivedAt (local ms), when known,
       put that instant in the middle of the round trip. */
    sync(serverIso, sentAt, receivedAt) {
      const server = Date.parse(serverIso);
      if (Number.isNaN(server)) return;
      const local = sentAt && receivedAt ? (sentAt + receivedAt) / 2 : Date.now();
      offsetMs = server - local;
    },
    /* A moment in the reader's own zone, naming the zone ("Dec 2, 2026, 10:31:51 AM UTC"). */
    local(ms) {
      return new Date(ms).toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit",
        timeZoneName: "short",
      });
    },
    duration(ms) {
      const total = Math.max(0, Math.ceil(ms / 1000));
      const d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
      const m = Math.floor((total % 3600) / 60), s = total % 60;
      const two = (n) => String(n).padStart(2, "0");
      if (d) return `${d}d ${two(h)}h ${two(m)}m`;
      if (h) return `${h}h ${two(m)}m ${two(s)}s`;
      if (m) return `${m}m ${two(s)}s`;
      return `${s}s`;
    },
  };
  window.FlashBidClock = clock;

  if (document.body.dataset.serverTime) clock.sync(document.body.dataset.serverTime);

  // Times rendered in UTC by the server, shown in the reader's own zone.
  for (const el of document.querySelectorAll("time[data-local]")) {
    const at = Date.parse(el.getAttribute("datetime"));
    if (!Number.isNaN(at)) {
      el.textContent = clock.local(at);
    }
  }

  // <span data-countdown-to="ISO" data-before="Ends in" data-after="Ended">
  const countdowns = document.querySelectorAll("[data-countdown-to]");
  function tick() {
    const now = clock.now();
    for (const el of countdowns) {
      const left = Date.parse(el.dataset.countdownTo) - now;
      el.textContent = left > 0 ? `${el.dataset.before} ${clock.duration(left)}` : el.dataset.after;
    }
  }
  if (countdowns.length) {
    tick();
    setInterval(tick, 1000);
  }
})();
