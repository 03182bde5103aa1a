/* The results page while the session is settling: ask the results endpoint until it answers
   (409 not_settled meanwhile), then show the page again with the results. */
(function () {
  "use strict";
  const settling = document.getElementById("settling");
  if (!settling) return;
  const url = settling.dataset.resultsApi;

  async function check() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.status === 200) {
        location.reload();
        return;
      }
    } catch (error) {
      // offline for a moment: ask again later
    }
    setTimeout(check, document.visibilityState === "hidden" ? 10000 : 2000);
  }
  setTimeout(check, 1000);
})();
