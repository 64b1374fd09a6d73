"use strict";
// Watches on the search page: "watch this search" (with the API token) and the list of watches
// with their new matches and feed links. Kept apart from the search script: it only reads the
// page's query string and fills #watches.
(() => {
  const FILTERS = ["q", "language", "source", "person", "organization", "place", "country",
                   "since", "until", "entity"];
  const TOKEN_KEY = "newsflow-api-token";
  const box = document.getElementById("watches");
  if (!box) return;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) node.append(child);  // strings become text, never HTML
    return node;
  }

  function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

  function headers() {
    const t = token();
    return t ? {"Authorization": "Bearer " + t} : {};
  }

  function describe(filters) {
    return Object.entries(filters).map(([k, v]) => k === "q" ? `"${v}"` : `${k}: ${v}`).join(", ");
  }

  async function watchThisSearch() {
    const status = document.getElementById("watch-status");
    const params = new URLSearchParams(location.search);
    const filters = {};
    for (const name of FILTERS) if (params.get(name)) filters[name] = params.get(name);
    if (!Object.keys(filters).length) {
      status.textContent = "Search for something first.";
      return;
    }
    const name = prompt("A name for this watch:", filters.q || Object.values(filters)[0]);
    if (!name) return;
    if (!token()) {
      const t = prompt("The API token (NEWSFLOW_API_TOKEN):");
      if (!t) return;
      localStorage.setItem(TOKEN_KEY, t);
    }
    const webhook = prompt("A webhook URL to POST each new match to (blank: feed only):") || null;
    const response = await fetch("watches", {
      method: "POST", headers: {"Content-Type": "application/json", ...headers()},
      body: JSON.stringify({name, filters, webhook}),
    });
    const body = await response.json();
    if (!response.ok) {
      if (response.status === 401) localStorage.removeItem(TOKEN_KEY);
      const detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ")
        : body.detail;
      status.textContent = "Not saved: " + (detail || response.statusText);
      return;
    }
    status.replaceChildren(`Watching "${body.name}". Signing secret (shown once): `,
                           el("code", {}, body.secret));
    await list();
  }

  async function list() {
    const response = await fetch("watches", {headers: headers()});
    if (!response.ok) return;
    const body = await response.json();
    document.getElementById("watch-this").hidden = !body.writable;
    const items = body.watches.map((w) => {
      const recent = el("ul", {className: "recent"});
      const show = el("button", {type: "button", className: "chip"}, "new matches");
      show.addEventListener("click", () => showRecent(w.id, recent));
      return el("li", {className: "watch"},
        el("strong", {}, w.name), " ", describe(w.filters), " — ",
        el("span", {className: "n"}, `${w.matches.day} today, ${w.matches.week} this week`), " ",
        show, ...(w.feed_url ? [" ", el("a", {href: w.feed_url}, "Atom feed")] : []), recent);
    });
    document.getElementById("watch-list").replaceChildren(...items);
  }

  async function showRecent(id, into) {
    const response = await fetch("watches/" + encodeURIComponent(id) + "?limit=10",
                                 {headers: headers()});
    if (!response.ok) return;
    const body = await response.json();
    into.replaceChildren(...(body.recent.length ? body.recent.map((m) => el("li", {},
      m.url ? el("a", {href: m.url, rel: "noopener noreferrer"}, m.title || m.article_id)
            : (m.title || m.article_id),
      el("span", {className: "meta"},
         ` ${m.source || ""} ${(m.published || "").slice(0, 10)}`))) : [el("li", {}, "No matches yet.")]));
  }

  document.getElementById("watch-this").addEventListener("click", watchThisSearch);
  list();
})();
