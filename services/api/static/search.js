// The search page's behaviour (a file, so the Content-Security-Policy needs no inline script).
"use strict";
// The page's state is its query string, so every search can be bookmarked and shared.
const FILTERS = ["language", "source", "person", "organization", "place", "country", "since",
                 "until", "has_duplicates", "entity", "credit"];
const FACETS = [["languages", "language", "Language"], ["sources", "source", "Source"],
                ["countries", "country", "Country"], ["persons", "person", "People"],
                ["organizations", "organization", "Organisations"],
                ["places", "place", "Places"], ["credits", "credit", "Credited"]];
const LIMIT = 10;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  const {dataset, ...rest} = props || {};
  Object.assign(node, rest);
  Object.assign(node.dataset, dataset || {});
  for (const child of children) node.append(child);  // strings become text, never HTML
  return node;
}

function state() { return new URLSearchParams(location.search); }

// "1 story", "2 stories".
function count(n, one, many) { return `${n.toLocaleString("en")} ${n === 1 ? one : many}`; }

function go(params) {
  for (const [key, value] of [...params]) if (value === "") params.delete(key);
  history.pushState(null, "", "?" + params.toString());
  run();
}

function setParam(key, value) {
  const params = state();
  params.set(key, value);
  params.delete("offset"); params.delete("after"); params.delete("from");
  go(params);
}

function dropParam(key) {
  const params = state();
  params.delete(key);
  if (key === "since") params.delete("until");
  params.delete("offset"); params.delete("after"); params.delete("from");
  go(params);
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = state();
  params.set("q", document.getElementById("q").value);
  params.set("sort", document.getElementById("sort").value);
  params.delete("offset"); params.delete("after"); params.delete("from");
  go(params);
});
window.addEventListener("popstate", run);

function renderChips(params) {
  const chips = document.getElementById("chips");
  chips.replaceChildren();
  for (const key of FILTERS) {
    if (!params.get(key)) continue;
    chips.append(el("button", {className: "chip", title: "Remove this filter",
                               onclick: () => dropParam(key)},
                    `${key}: ${params.get(key)} ✕`));
  }
}

function renderFacets(facets) {
  const aside = document.getElementById("facets");
  aside.replaceChildren();
  if (!facets) return;
  for (const [name, param, label] of FACETS) {
    if (!facets[name] || !facets[name].length) continue;
    const list = el("ul", {});
    for (const {value, count} of facets[name]) {
      list.append(el("li", {},
        el("button", {onclick: () => setParam(param, value), dataset: {facet: param}}, value),
        el("span", {className: "n"}, String(count))));
    }
    aside.append(el("h3", {}, label), list);
  }
  if (facets.days && facets.days.length) {
    const list = el("ul", {});
    for (const {value, count} of facets.days.slice(-31)) {
      list.append(el("li", {},
        el("button", {dataset: {facet: "day"}, onclick: () => {
          const params = state();
          params.set("since", value); params.set("until", value); params.delete("offset"); params.delete("after"); params.delete("from");
          go(params);
        }}, value),
        el("span", {className: "n"}, String(count))));
    }
    aside.append(el("h3", {}, "Days"), list);
  }
}

function renderHit(hit) {
  const day = hit.published ? hit.published.slice(0, 10) : "undated";
  const snippet = el("p", {className: "snippet"});
  snippet.innerHTML = hit.snippet;  // escaped by the API; only <mark> is markup
  const node = el("article", {className: "hit", dataset: {id: hit.id}},
    el("h2", {}, el("a", {href: hit.url || "#", target: "_blank", rel: "noopener noreferrer"},
                    hit.title || hit.url || hit.id)),
    el("div", {className: "meta"},
       `${day} · ${hit.source || hit.site_name || "unknown source"} · ${hit.language}` +
       (hit.countries.length ? ` · ${hit.countries.join(", ")}` : "")),
    snippet);
  if (hit.similar.length) {
    const list = el("ul", {});
    for (const other of hit.similar) {
      list.append(el("li", {}, el("a", {href: other.url || "#", target: "_blank",
                                       rel: "noopener noreferrer"}, other.title || other.id),
                     ` · ${other.source || ""} ${other.published ? other.published.slice(0, 10) : ""}`));
    }
    node.append(el("details", {className: "similar"},
                   el("summary", {}, `${hit.similar.length} similar`), list));
  }
  return node;
}

async function run() {
  const params = state();
  document.getElementById("q").value = params.get("q") || "";
  document.getElementById("sort").value = params.get("sort") || "relevance";
  renderChips(params);
  const error = document.getElementById("error");
  error.textContent = "";
  const request = new URLSearchParams(params);
  // No words and no filter: the page shows what is indexed, the latest first (every score is
  // equal, so relevance orders by date), and the top facets.
  const browsing = !params.get("q") && !FILTERS.some((key) => params.get(key));
  request.delete("from");  // the page's own: where a cursor page starts, for the numbering
  request.set("facets", "true");
  request.set("limit", String(LIMIT));
  document.body.dataset.state = "loading";
  let body;
  try {
    const response = await fetch("search?" + request.toString());
    body = await response.json();
    if (!response.ok) {
      const detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ")
        : body.detail;
      throw new Error(detail || response.statusText);
    }
  } catch (exc) {
    error.textContent = String(exc.message || exc);
    document.getElementById("hits").replaceChildren();
    document.body.dataset.state = "error";
    return;
  }
  const offset = params.has("after") ? Number(params.get("from") || 0) : body.offset;
  const shown = `${offset + 1}–${offset + body.hits.length}`;
  // Past the search bound the totals are estimates: say so ("about 510,000 stories").
  const about = body.total_is_estimate ? "about " : "";
  let summary;
  if (browsing) {
    summary = body.total_articles
      ? `${about}${count(body.total_articles, "article", "articles")} indexed ` +
        `(${about}${count(body.total, "story", "stories")}). ` +
        (offset ? `Newest first, ${shown}:` : "The latest:")
      : "Nothing indexed yet. Publish articles with: newsflow publish URL";
  } else {
    summary = body.total
      ? `${about}${count(body.total, "story", "stories")} ` +
        `(${about}${count(body.total_articles, "article", "articles")}) — ${shown}`
      : "Nothing found.";
  }
  document.getElementById("summary").textContent = summary;
  document.body.dataset.view = browsing ? "browse" : "search";
  renderFacets(body.facets);
  document.getElementById("hits").replaceChildren(...body.hits.map(renderHit));
  const pager = document.getElementById("pager");
  pager.replaceChildren();
  const page = (to) => { const p = state(); p.set("offset", String(to)); go(p); };
  // Offsets for the first pages (the API takes them up to 1,000), then the cursor (any depth);
  // Previous from a cursor page goes back the way we came.
  const following = () => {
    if (!params.has("after") && offset + 2 * LIMIT <= 1000) return page(offset + LIMIT);
    const p = state(); p.delete("offset"); p.set("after", body.next); p.set("from", String(offset + body.hits.length)); go(p);
  };
  if (params.has("after")) pager.append(el("button", {id: "prev", onclick: () => history.back()}, "← Previous"));
  else if (offset > 0) pager.append(el("button", {id: "prev", onclick: () => page(Math.max(0, offset - LIMIT))}, "← Previous"));
  if (body.next) pager.append(el("button", {id: "next", onclick: following}, "Next →"));
  document.body.dataset.state = "ready";
}

run();
