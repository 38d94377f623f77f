// The llmbudget dashboard: reads the gateway's admin API with the admin token and draws KPI
// tiles, cost per namespace, the daily trend and budget bars. No external resources.
"use strict";

const TOKEN_KEY = "llmbudget-admin-token";

function takeToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

async function get(path, token) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

const integer = new Intl.NumberFormat("en-US");

function el(tag, attributes, ...children) {
  const node = document.createElementNS(
    tag === "svg" || tag === "rect" || tag === "text" || tag === "title"
      ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function renderTiles(totals) {
  const set = (name, text) => { document.querySelector(`[data-kpi="${name}"]`).textContent = text; };
  set("requests", integer.format(totals.requests));
  set("tokens", integer.format(totals.tokens));
  set("cost", "$" + totals.spentUsd);
  set("avg-tokens", integer.format(totals.requests ? Math.round(totals.tokens / totals.requests) : 0));
}

function renderNamespaces(items) {
  const body = document.querySelector("#namespaces tbody");
  body.replaceChildren(...items.map((item) => el("tr", { "data-namespace": item.name },
    el("td", {}, item.name), el("td", {}, integer.format(item.requests)),
    el("td", {}, integer.format(item.tokens)), el("td", {}, item.spentUsd),
    el("td", {}, item.avgCostUsd))));
}

function everyDay(report) {
  // The report lists days with spend; the chart shows every day of the range.
  const byDate = new Map(report.items.map((d) => [d.date, d]));
  const days = [];
  const end = new Date(report.to);
  for (let day = new Date(report.from.slice(0, 10) + "T00:00:00Z"); day < end;
       day = new Date(day.getTime() + 86400000)) {
    const date = day.toISOString().slice(0, 10);
    days.push(byDate.get(date) || { date, requests: 0, tokens: 0, spentUsd: "0" });
  }
  return days;
}

function renderTrend(days) {
  const svg = document.getElementById("trend");
  const width = 900, height = 220, bottom = 20;
  const max = Math.max(...days.map((d) => Number(d.spentUsd)), 0);
  const step = width / Math.max(days.length, 1);
  const nodes = [];
  days.forEach((day, i) => {
    const usd = Number(day.spentUsd);
    const h = max > 0 ? (usd / max) * (height - bottom - 10) : 0;
    if (usd > 0) {
      const rect = el("rect", { x: (i * step + step * 0.15).toFixed(1),
        y: (height - bottom - h).toFixed(1), width: (step * 0.7).toFixed(1), height: h.toFixed(1),
        "data-date": day.date, "data-usd": day.spentUsd });
      rect.append(el("title", {},
        `${day.date}: $${day.spentUsd}, ${integer.format(day.requests)} requests`));
      nodes.push(rect);
    }
    if (i % Math.ceil(days.length / 10) === 0) {
      nodes.push(el("text", { x: (i * step + 2).toFixed(1), y: height - 4 }, day.date.slice(5)));
    }
  });
  svg.replaceChildren(...nodes);
}

function renderBudgets(items) {
  const list = document.getElementById("budgets");
  list.replaceChildren(...items.map((item) => {
    const percent = Number(item.percentUsed);
    const bar = el("div", { class: item.state });
    bar.style.width = `${Math.min(percent, 100)}%`; // CSSOM: allowed by the page's CSP
    return el("li", { "data-budget": `${item.namespace}/${item.name}`, "data-percent": String(percent) },
      el("div", { class: "label" }, el("span", {}, `${item.namespace}/${item.name}`),
        el("span", {}, `${percent.toFixed(1)}% · ${item.state}`)),
      el("div", { class: "bar" }, bar));
  }));
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
  document.body.dataset.ready = "error";
}

async function load(token) {
  try {
    const [spend, daily, budgets] = await Promise.all([
      get("/admin/v1/reports/spend?by=namespace&top=1000", token),
      get("/admin/v1/reports/daily", token),
      get("/admin/v1/budgets?breakdown=false", token),
    ]);
    renderTiles(spend.totals);
    renderNamespaces(spend.items);
    renderTrend(everyDay(daily));
    renderBudgets(budgets.items);
    document.getElementById("content").hidden = false;
    document.getElementById("error").hidden = true;
    document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = "1";
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById("login").hidden = false;
    }
    showError("Could not load spend: " + error.message);
  }
}

function start() {
  const token = takeToken();
  const form = document.getElementById("login");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, value);
    form.hidden = true;
    load(value);
  });
  if (!token) {
    form.hidden = false;
    document.body.dataset.ready = "login";
    return;
  }
  load(token);
  setInterval(() => load(sessionStorage.getItem(TOKEN_KEY)), 30000);
}

start();
