// Progressive enhancement of the search page. Without this file the page is a plain GET form and works fully.
// With it: searches go through the JSON API and results update in place, the URL follows (/?q=...), the back
// button restores earlier searches, and each result gets a "Copy citation" button. Any failure falls back to
// loading the server-rendered page, which carries the friendly messages.
"use strict";

(() => {
  const form = document.querySelector("form.search");
  const results = document.getElementById("results");
  if (!form || !results || !window.fetch || !window.history.pushState) return;

  const input = form.elements.q;
  const scope = form.elements.document;
  const list = results.querySelector(".results");
  const heading = document.getElementById("results-heading");
  const unanswerable = results.querySelector(".unanswerable");
  const corrected = results.querySelector(".corrected");
  const confidence = results.querySelector(".confidence");
  const more = results.querySelector(".more");
  const error = document.getElementById("search-error");
  const examples = document.getElementById("examples");
  const announcer = document.getElementById("announcer");
  const template = document.getElementById("result-template");
  const siteName = document.querySelector(".brand").textContent.trim();
  const config = {
    api: form.dataset.api,
    pageUrl: form.getAttribute("action"),
    documents: results.dataset.documents,
    defaultK: Number(results.dataset.defaultK),
    maxK: Number(results.dataset.maxK),
    moreStep: Number(results.dataset.moreStep),
  };
  let pending = null;

  /** The search parameters q, document and k, without the empty or default ones. */
  function cleanParams(params) {
    const clean = new URLSearchParams();
    clean.set("q", params.get("q") || "");
    if (params.get("document")) clean.set("document", params.get("document"));
    if (params.get("k") && Number(params.get("k")) !== config.defaultK) clean.set("k", params.get("k"));
    return clean;
  }

  const pageUrl = (params) => `${config.pageUrl}?${params}`;

  function documentUrl(documentId, chunk, query) {
    const path = documentId.split("/").map(encodeURIComponent).join("/");
    const search = query ? `?q=${encodeURIComponent(query)}` : "";
    return `${config.documents}/${path}${search}#c-${chunk}`;
  }

  /** Text nodes and <mark> elements for `text` (starting at document offset `offset`), marks given in offsets. */
  function markedNodes(text, offset, marks) {
    const nodes = [];
    let cursor = 0;
    for (const mark of [...marks].sort((a, b) => a.start - b.start)) {
      const start = Math.max(mark.start - offset, cursor);
      const end = Math.min(mark.end - offset, text.length);
      if (start >= end) continue;
      nodes.push(document.createTextNode(text.slice(cursor, start)));
      const marked = document.createElement("mark");
      marked.textContent = text.slice(start, end);
      nodes.push(marked);
      cursor = end;
    }
    nodes.push(document.createTextNode(text.slice(cursor)));
    return nodes;
  }

  function resultItem(result, query) {
    const item = template.content.firstElementChild.cloneNode(true);
    const field = (name) => item.querySelector(`[data-field="${name}"]`);
    const citeId = `cite-${result.rank}`;
    item.id = `r-${result.rank}`;
    item.querySelector("cite").id = citeId;
    item.querySelectorAll("[aria-describedby]").forEach((el) => el.setAttribute("aria-describedby", citeId));
    for (const name of ["rank", "section", "paragraph", "document_title"]) field(name).textContent = result[name];
    field("page").textContent = result.page ? `p.\u00a0${result.page} · ` : "";
    field("page").hidden = !result.page;
    field("score").textContent = result.score.toFixed(2);
    field("passage").replaceChildren(...markedNodes(result.text, result.start, result.highlights));
    field("context_url").href = documentUrl(result.document, result.chunk, query);
    field("permalink").href = documentUrl(result.document, result.chunk);
    return item;
  }

  function showCopyButtons() {
    list.querySelectorAll("button.copy").forEach((button) => { button.hidden = false; });
  }

  function moreUrl(params, count) {
    const k = Number(params.get("k") || config.defaultK);
    if (count < k || k >= config.maxK) return null;
    const next = new URLSearchParams(params);
    next.set("k", String(Math.min(k + config.moreStep, config.maxK)));
    return pageUrl(cleanParams(next));
  }

  function showForm(params) {
    input.value = params.get("q") || "";
    if (scope) scope.value = params.get("document") || "";
    document.title = input.value.trim() ? `${input.value} · ${siteName}` : siteName;
  }

  function hideError() {
    error.hidden = true;
    error.textContent = "";
    input.removeAttribute("aria-invalid");
  }

  function showResults(response, params, focusRank) {
    showForm(params);
    hideError();
    examples.hidden = true;
    results.classList.toggle("closest", !response.answerable);
    unanswerable.hidden = response.answerable;
    corrected.hidden = !response.corrected_query;
    const verdict = response.answerable ? confidence.dataset.answers : confidence.dataset.closest;
    confidence.textContent = `${verdict} (confidence ${Math.round(response.confidence * 100)}%).`;
    corrected.querySelector("strong").textContent = response.corrected_query || "";
    heading.textContent = response.answerable ? heading.dataset.answers : heading.dataset.closest;
    list.replaceChildren(...response.results.map((r) => resultItem(r, params.get("q"))));
    showCopyButtons();
    const next = moreUrl(params, response.results.length);
    more.hidden = !next;
    if (next) more.querySelector("a").href = next;
    results.hidden = false;
    results.removeAttribute("aria-busy");
    const target = focusRank ? document.getElementById(`r-${focusRank}`) : null;
    (target || (response.answerable ? heading : unanswerable)).focus();
  }

  function showStart() {
    showForm(new URLSearchParams());
    hideError();
    results.hidden = true;
    examples.hidden = false;
    input.focus();
  }

  /** Search through the API; on success show the results (recording them in history), else load the page. */
  async function search(params, { push, focusRank = 0 }) {
    params = cleanParams(params);
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    results.setAttribute("aria-busy", "true");
    let response;
    try {
      const reply = await fetch(`${config.api}?${params}`, { signal: controller.signal, headers: { Accept: "application/json" } });
      if (!reply.ok) throw new Error(`search answered ${reply.status}`);
      response = await reply.json();
    } catch (failure) {
      if (failure.name !== "AbortError") window.location.assign(pageUrl(params));
      return;
    }
    const state = { params: params.toString(), response };
    const url = pageUrl(params);
    if (push && url !== window.location.pathname + window.location.search) history.pushState(state, "", url);
    else history.replaceState(state, "", url);
    showResults(response, params, focusRank);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(new URLSearchParams(new FormData(form)), { push: true });
  });

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-search]");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    const focusRank = link.hasAttribute("data-more") ? list.children.length + 1 : 0;
    search(new URL(link.href).searchParams, { push: true, focusRank });
  });

  window.addEventListener("popstate", (event) => {
    const params = new URLSearchParams(window.location.search);
    if (event.state && event.state.response) showResults(event.state.response, new URLSearchParams(event.state.params), 0);
    else if (params.has("q")) search(params, { push: false });
    else showStart();
  });

  async function copyCitation(button) {
    const item = button.closest(".result");
    const text = (name) => item.querySelector(`[data-field="${name}"]`).textContent;
    const citation = `${text("document_title")}, ${text("page")}${text("section")} › ¶ ${text("paragraph")}. ${item.querySelector(".permalink").href}`;
    try {
      await navigator.clipboard.writeText(citation);
      announcer.textContent = `Citation copied: ${citation}`;
      button.dataset.label = button.dataset.label || button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = button.dataset.label; }, 2000);
    } catch {
      window.prompt("Copy this citation:", citation); // no clipboard access (e.g. plain http): let the reader copy it
    }
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.copy");
    if (button) copyCitation(button);
  });

  showCopyButtons();
})();
