// The run page: status and controls, phases, score chart, solution tree, script viewer,
// ablations, LLM calls and the event log. The event stream drives what gets refreshed.

import { api } from "./api.js";
import { badge, clock, duration, fill, h, money, score, say } from "./dom.js";

const POLL_MS = 2000;
const MAX_LOG = 400;
const LIVE = new Set(["created", "running", "paused", "starting"]);
const DOWNLOADS = ["submission.csv", "solution.py", "report.html", "report.md"];
// Which parts of the page an event makes stale.
const STALE = {
  script_started: ["nodes"],
  script_finished: ["nodes", "chart", "detail"],
  best_updated: ["chart", "detail", "nodes"],
  submission_written: ["detail", "nodes"],
  phase_started: ["detail"],
  phase_finished: ["detail"],
  ablation: ["ablations"],
  check: ["ablations"],
  llm_call: ["llm"],
};
for (const t of ["run_started", "run_resumed", "run_paused", "run_stopped", "run_finished", "run_failed"]) {
  STALE[t] = ["detail", "nodes", "chart"];
}

export function showRun(view, runId, nodeId) {
  const page = new RunPage(view, runId, nodeId);
  return { ready: page.start(), close: () => page.close(), select: (id) => page.select(id) };
}

class RunPage {
  constructor(view, runId, nodeId) {
    this.runId = runId;
    this.selected = nodeId;
    this.detail = null;
    this.lastSeq = 0;
    this.stream = null;
    this.closed = false;
    this.dirty = new Set();
    this.flushTimer = null;
    this.el = {};
    this.build(view);
  }

  build(view) {
    const e = this.el;
    e.title = h("h1", { id: "run-title" }, this.runId);
    e.status = h("span", { id: "run-status", class: "badge" }, "…");
    e.note = h("span", { id: "run-note", class: "muted" });
    e.pause = h("button", { id: "btn-pause", onclick: () => this.control("pause") }, "Pause");
    e.resume = h("button", { id: "btn-resume", onclick: () => this.control("resume") }, "Resume");
    e.stop = h("button", { id: "btn-stop", class: "danger", onclick: () => this.control("stop") }, "Stop");
    e.downloads = h("span", { id: "downloads", class: "downloads" });
    e.cards = h("div", { id: "cards", class: "cards" });
    e.phases = h("ol", { id: "phases", class: "phases" });
    e.chart = h("div", { id: "chart", class: "chart" });
    e.tree = h("div", { id: "tree", class: "tree" });
    e.viewer = h("div", { id: "viewer", class: "viewer" }, h("p", { class: "muted" }, "Pick a script in the tree."));
    e.ablations = h("div", { id: "ablations" });
    e.llm = h("div", { id: "llm" });
    e.events = h("ol", { id: "events", class: "events", reversed: true });
    e.process = h("pre", { id: "process-log", class: "log", hidden: true });
    fill(view,
      h("section", { class: "run-head" },
        h("div", {}, h("a", { href: "#/" }, "← runs")),
        h("div", { class: "title-row" }, e.title, e.status, e.note),
        h("div", { class: "toolbar" }, e.pause, e.resume, e.stop,
          h("button", { id: "btn-report", class: "quiet", onclick: () => this.report() }, "Write report"),
          e.downloads)),
      e.cards, e.phases, e.process,
      h("div", { class: "grid" },
        h("section", { class: "panel" }, h("h2", {}, "Best score over time"), e.chart,
          h("h2", {}, "Solution tree"), e.tree),
        h("section", { class: "panel" }, h("h2", {}, "Script"), e.viewer)),
      h("div", { class: "grid" },
        h("section", { class: "panel" }, h("h2", {}, "Ablations and checks"), e.ablations),
        h("section", { class: "panel" }, h("h2", {}, "LLM calls"), e.llm)),
      h("section", { class: "panel" }, h("h2", {}, "Events"), e.events),
    );
  }

  async start() {
    // Errors here (unknown run, missing token) go to the router; later ones only to the message bar.
    this.renderDetail(await api.run(this.runId));
    await this.refresh(["nodes", "chart", "ablations", "llm"]);
    if (this.selected) this.select(this.selected);
    this.connect();
    this.poller = setInterval(() => this.poll(), POLL_MS);
  }

  close() {
    this.closed = true;
    clearInterval(this.poller);
    clearTimeout(this.flushTimer);
    if (this.stream) this.stream.close();
  }

  // -- live updates -------------------------------------------------------------------------
  connect() {
    if (this.stream || this.closed) return;
    const es = api.stream(this.runId, this.lastSeq);
    this.stream = es;
    document.getElementById("conn").textContent = "live";
    es.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
      this.logEvent(event);
      for (const part of STALE[event.type] || []) this.dirty.add(part);
      this.scheduleFlush();
    };
    es.addEventListener("end", () => this.disconnect());
    es.onerror = () => {
      // The browser retries by itself unless the server refused the stream outright.
      if (es.readyState === EventSource.CLOSED) this.disconnect();
    };
  }

  disconnect() {
    if (this.stream) this.stream.close();
    this.stream = null;
    document.getElementById("conn").textContent = "";
    this.refresh(["detail", "nodes", "chart", "ablations", "llm"]);
  }

  scheduleFlush() {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      const parts = [...this.dirty];
      this.dirty.clear();
      this.refresh(parts);
    }, 250);
  }

  async poll() {
    await this.refresh(this.isLive() ? ["detail", "chart"] : ["detail"]);
    // A stopped run that was resumed (here or from a terminal) comes back to life: follow it again.
    if (this.isLive() && !this.stream) this.connect();
  }

  isLive() {
    return this.detail !== null && LIVE.has(this.detail.status);
  }

  async refresh(parts) {
    if (this.closed) return;
    const jobs = {
      detail: async () => this.renderDetail(await api.run(this.runId)),
      nodes: async () => this.renderTree(await api.nodes(this.runId)),
      chart: async () => this.renderChart(await api.chart(this.runId)),
      ablations: async () => this.renderAblations(await api.ablations(this.runId)),
      llm: async () => this.renderLLM(await api.llmCalls(this.runId)),
    };
    const pending = this.detail && this.detail.status === "starting" && !this.detail.task?.name;
    await Promise.all(parts.map(async (part) => {
      if (pending && part !== "detail") return; // the run folder does not exist yet
      try {
        await jobs[part]();
      } catch (err) {
        if (err.status === 401) say("access token needed", "error");
        else if (part === "detail") say(`could not load the run: ${err.message}`, "error");
      }
    }));
  }

  // -- controls -----------------------------------------------------------------------------
  async control(action) {
    try {
      const result = await api.control(this.runId, action);
      say(result.message);
    } catch (err) {
      say(`${action} failed: ${err.message}`, "error");
    }
    await this.refresh(["detail"]);
    if (this.isLive()) this.connect();
  }

  async report() {
    try {
      await api.writeReport(this.runId);
      say("report written");
    } catch (err) {
      say(`report failed: ${err.message}`, "error");
    }
    await this.refresh(["detail"]);
  }

  // -- rendering ------------------------------------------------------------------------------
  renderDetail(d) {
    this.detail = d;
    const e = this.el;
    e.title.textContent = d.competition ? `${d.competition}` : d.run_id;
    e.status.className = `badge ${d.status}`;
    e.status.textContent = d.status.replace("_", " ");
    e.status.dataset.status = d.status;
    const stopping = d.control === "stop" && LIVE.has(d.status);
    const pausing = d.control === "pause" && d.status === "running";
    e.note.textContent = `${d.run_id}${stopping ? " · stopping…" : pausing ? " · pausing…" : ""}`;
    // While a process is starting up it resets control requests: steer it once it runs.
    e.pause.disabled = d.status !== "running" || d.control !== "run";
    e.resume.disabled = !(["paused", "stopped", "crashed", "failed"].includes(d.status) || d.control === "pause")
      || stopping;
    e.stop.disabled = !["running", "paused"].includes(d.status) || d.control === "stop";

    fill(e.downloads, DOWNLOADS.map((name) => d.files?.[name]
      ? h("a", { href: api.fileUrl(this.runId, name), download: name, id: `dl-${name.replace(".", "-")}` }, name)
      : h("span", { class: "muted", title: "not written yet" }, name)));

    const limit = d.budget?.time_limit_s || d.config?.time_limit_s;
    const direction = d.lower_is_better === null || d.lower_is_better === undefined ? ""
      : d.lower_is_better ? "lower is better" : "higher is better";
    fill(e.cards,
      card(`best ${d.metric || "score"}`, h("span", { id: "best-score" }, score(d.best_score)), direction),
      card("scripts", d.n_scripts, d.best?.node_id ? `best is #${d.best.node_id}` : ""),
      card("time", duration(d.elapsed_s), limit ? `of ${duration(limit)}` : "no time limit"),
      card("brain", d.brain || "–", d.phase && this.isLive() ? `now in ${d.phase}` : ""),
      card("submission", d.files?.["submission.csv"] ? "written" : "not yet",
        d.submission?.dev_score !== undefined ? `validation ${score(d.submission.dev_score)}` : ""),
      ...confidenceCards(d.summary),
    );
    fill(e.phases, (d.phases || []).map((p) =>
      h("li", { class: `phase ${p.state}`, "data-phase": p.name, "data-state": p.state },
        h("strong", {}, p.title), h("span", { class: "muted" }, p.state))));
    const log = d.process && (d.status === "starting" || d.status === "launch_failed" || d.process.returncode)
      ? d.process.log_tail : "";
    e.process.hidden = !log;
    e.process.textContent = log;
  }

  renderChart(svgText) {
    // Our own server's SVG (escaped server-side, no scripts: the page's CSP forbids inline ones).
    this.el.chart.innerHTML = svgText;
  }

  renderTree(list) {
    this.nodes = new Map(list.nodes.map((n) => [n.id, n]));
    if (!list.nodes.length) {
      fill(this.el.tree, h("p", { class: "muted" }, "No scripts yet."));
      return;
    }
    fill(this.el.tree, list.nodes.map((n) => {
      const row = h("div", {
        class: `node ${n.status}${n.is_best ? " best" : ""}${n.id === this.selected ? " selected" : ""}`,
        "data-node": n.id, "data-status": n.status, "data-agent": n.agent,
        style: `padding-left: ${6 + 14 * Math.min(n.depth, 16)}px`,
        title: n.plan || n.error || "",
        onclick: () => { location.hash = `#/runs/${encodeURIComponent(this.runId)}/scripts/${n.id}`; },
      },
      n.depth ? h("span", { class: "muted" }, "↳ ") : "",
      h("span", { class: "nid" }, `#${n.id}`), " ",
      h("span", { class: `agent agent-${n.agent}` }, n.agent), " ",
      h("span", { class: "label" }, n.label),
      n.extra_parents.map((p) => h("span", { class: "tag" }, `+#${p}`)),
      h("span", { class: "score" }, n.status === "failed" ? "failed" : n.status === "running" ? "running…" : score(n.score)),
      n.is_best ? h("span", { class: "star", title: "best script" }, "★") : "",
      n.in_submission ? h("span", { class: "sub", title: "behind the submission" }, "✓") : "");
      return row;
    }));
  }

  async select(nodeId) {
    this.selected = nodeId;
    for (const row of this.el.tree.querySelectorAll(".node")) {
      row.classList.toggle("selected", Number(row.dataset.node) === nodeId);
    }
    try {
      this.renderScript(await api.script(this.runId, nodeId));
    } catch (err) {
      fill(this.el.viewer, h("p", { class: "error" }, err.message));
    }
  }

  renderScript(s) {
    const n = s.node;
    const panes = {
      code: h("pre", { class: "code", id: "viewer-code" }, s.code ?? "(no script file)"),
      diff: s.diff === null ? h("p", { class: "muted", id: "viewer-diff" }, "No parent to compare with.")
        : diffView(s.diff),
      stdout: h("pre", { class: "log", id: "viewer-stdout" }, s.stdout ?? "(nothing)"),
      stderr: h("pre", { class: "log", id: "viewer-stderr" }, s.stderr ?? "(nothing)"),
    };
    const body = h("div", { class: "pane" });
    const tabs = Object.keys(panes).map((name) => h("button", {
      class: "tab", id: `tab-${name}`, "data-tab": name,
      onclick: () => show(name),
    }, name === "diff" && s.compared_to !== null ? `diff vs #${s.compared_to}` : name));
    const show = (name) => {
      for (const tab of tabs) tab.classList.toggle("active", tab.dataset.tab === name);
      fill(body, panes[name]);
      this.tab = name;
    };
    fill(this.el.viewer,
      h("div", { class: "script-head", "data-node": n.id },
        h("strong", {}, `#${n.id} ${n.agent}`), ` ${n.label} `,
        h("span", { class: `badge ${n.status}` }, n.status === "failed" ? "failed" : score(n.score))),
      h("dl", { class: "facts" },
        fact("phase", `${n.phase}${n.track !== null ? `, track ${n.track}` : ""}`),
        fact("from", n.parent_ids.length ? n.parent_ids.map((p) => `#${p}`).join(", ") : "–"),
        fact("run time", duration(n.wall_s)),
        n.ran_on ? fact("ran on", n.ran_on) : null,
        n.model ? fact("model", n.model) : null,
        n.block_name ? fact("block", n.block_name) : null,
        n.plan ? fact("plan", n.plan) : null,
        n.error ? fact("error", n.error.trim().split("\n").slice(-3).join("\n")) : null,
        s.truncated.length ? fact("note", `showing the end of: ${s.truncated.join(", ")}`) : null),
      h("div", { class: "tabs" }, tabs),
      body);
    show(this.tab && panes[this.tab] ? this.tab : "code");
  }

  renderAblations(data) {
    const parts = [];
    for (const a of data.ablations) {
      const entries = Object.entries(a.effects).sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
      const largest = Math.max(1e-12, ...entries.map(([, v]) => Math.abs(v)));
      parts.push(h("div", { class: "ablation" },
        h("h3", {}, `Track ${a.track ?? "–"}${a.outer_step !== null ? `, outer step ${a.outer_step + 1}` : ""}`,
          h("span", { class: "muted" }, ` script #${a.node_id}${a.baseline !== null ? `, baseline ${score(a.baseline)}` : ""}`)),
        h("p", {}, a.summary),
        entries.length ? h("table", { class: "effects" }, entries.map(([name, delta]) => h("tr", {},
          h("td", {}, name), h("td", { class: "num" }, (delta >= 0 ? "+" : "") + score(delta)),
          h("td", {}, h("span", { class: `bar ${delta >= 0 ? "pos" : "neg"}`,
            style: `width: ${Math.max(1, Math.round(100 * Math.abs(delta) / largest))}px` }))))) : null));
    }
    if (!parts.length) parts.push(h("p", { class: "muted" }, "No ablation study yet."));
    if (data.checks.length) {
      parts.push(h("h3", {}, "Leakage and data-usage checks"), h("table", { class: "checks" },
        h("tr", {}, ["check", "track", "verdict", "fix kept", "reason"].map((t) => h("th", {}, t))),
        data.checks.map((c) => h("tr", {}, h("td", {}, c.kind), h("td", {}, c.track ?? ""), h("td", {}, c.verdict),
          h("td", {}, c.kept ? "yes" : "no"), h("td", {}, c.reason || c.message)))));
    }
    fill(this.el.ablations, parts);
  }

  renderLLM(data) {
    const u = data.usage;
    if (!u.calls) {
      fill(this.el.llm, h("p", { class: "muted" }, this.detail?.brain === "expert"
        ? "No LLM calls: the offline expert brain writes the scripts." : "No LLM calls yet."));
      return;
    }
    const agents = Object.entries(u.by_agent).sort();
    fill(this.el.llm,
      h("p", { id: "llm-total" }, `${u.calls} calls (${u.cached_calls} cached), ${u.prompt_tokens} prompt + `
        + `${u.completion_tokens} completion tokens, ${money(u.cost_usd)}`
        + (u.unpriced_calls ? ` + ${u.unpriced_calls} calls without a known price` : "")),
      h("table", { class: "llm" },
        h("tr", {}, ["agent", "calls", "prompt", "completion", "cost"].map((t) => h("th", {}, t))),
        agents.map(([name, a]) => h("tr", {}, h("td", {}, name), h("td", { class: "num" }, a.calls),
          h("td", { class: "num" }, a.prompt_tokens), h("td", { class: "num" }, a.completion_tokens),
          h("td", { class: "num" }, money(a.cost_usd))))),
      h("details", {}, h("summary", {}, "every call"),
        h("table", { class: "llm" },
          h("tr", {}, ["time", "agent", "model", "tokens", "cost", ""].map((t) => h("th", {}, t))),
          data.calls.slice(-300).reverse().map((c) => h("tr", {}, h("td", {}, clock(c.ts)), h("td", {}, c.agent),
            h("td", {}, `${c.provider}:${c.model}`), h("td", { class: "num" }, `${c.prompt_tokens}+${c.completion_tokens}`),
            h("td", { class: "num" }, c.cost_usd === null ? "?" : money(c.cost_usd)),
            h("td", {}, c.cached ? "cached" : c.error ? "error" : ""))))));
  }

  logEvent(event) {
    const item = h("li", { class: `ev ev-${event.type}`, "data-seq": event.seq },
      h("span", { class: "muted" }, clock(event.ts)), " ",
      h("span", { class: "type" }, event.type), " ", event.message);
    this.el.events.prepend(item);
    while (this.el.events.children.length > MAX_LOG) this.el.events.lastChild.remove();
  }
}

// How sure the run is: the final solution's multi-seed evaluation, the target score, the time used.
function confidenceCards(summary) {
  const cards = [];
  const final = summary?.final_evaluation;
  if (final?.ci95) {
    cards.push(card("final evaluation", h("span", { id: "final-mean" }, `${score(final.mean)} ± ${score(final.std)}`),
      `95% interval ${score(final.ci95[0])} – ${score(final.ci95[1])} over ${final.seeds} seeds`));
  } else if (final) {
    cards.push(card("final evaluation", score(final.mean), final.note || "one score only"));
  }
  const goal = summary?.goal;
  if (goal) {
    cards.push(card(`target ${score(goal.target_score)}`, goal.reached ? "reached" : "not reached",
      goal.reached ? `after ${duration(goal.at_s)}` : ""));
  }
  const used = summary?.time_used;
  if (used?.share !== null && used?.share !== undefined) {
    cards.push(card("time used", `${Math.round(used.share * 100)}%`, used.ended_because || ""));
  }
  return cards;
}

function card(label, value, sub) {
  return h("div", { class: "card" }, h("div", { class: "k" }, label), h("div", { class: "v" }, value),
    h("div", { class: "k" }, sub || ""));
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

function diffView(text) {
  if (!text) return h("p", { class: "muted", id: "viewer-diff" }, "Identical to its parent.");
  return h("pre", { class: "code diff", id: "viewer-diff" }, text.split("\n").map((line) => {
    const kind = line.startsWith("+++") || line.startsWith("---") ? "file"
      : line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "";
    return h("span", { class: kind }, line + "\n");
  }));
}
