// 明医 MING web page: plain JS, no build step. Talks to the same OpenAI-compatible API as any client:
// every request carries the whole conversation (the server keeps no state).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { mode: "qa", history: [], busy: false, controller: null, authRequired: false };

function apiKey() { return sessionStorage.getItem("ming-api-key") || $("api-key").value.trim(); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function scrollDown() { const log = $("log"); log.scrollTop = log.scrollHeight; }

function setStatus(text) { $("status").textContent = text || ""; }

function addUser(text) {
  $("welcome").hidden = true;
  const row = el("div", "msg user");
  row.appendChild(el("div", "bubble", text));
  $("log").appendChild(row);
  scrollDown();
}

function addAssistant() {
  const row = el("div", "msg assistant");
  row.dataset.testid = "answer";
  const stack = el("div", "stack");
  const bubble = el("div", "bubble streaming");
  stack.appendChild(bubble);
  row.appendChild(stack);
  $("log").appendChild(row);
  scrollDown();
  return { row, stack, bubble, modelText: "" };
}

const NOTE_KINDS = new Set(["grounding", "medication", "retrieval"]);

function appendText(msg, text, kind) {
  if (kind === "safety") {
    msg.bubble.appendChild(el("span", "safety-text", text));
  } else if (NOTE_KINDS.has(kind)) {
    // a note of a stage (grounding: the explanation from the findings; medication: 用药提示; retrieval: 参考：…):
    // shown, set apart, and kept out of the history sent back as the model's words (a consult reply is the
    // doctor's words: it stays in the history like the model's)
    const span = el("span", "stage-text", text);
    span.dataset.stage = kind;
    span.dataset.testid = "stage-" + kind;
    msg.bubble.appendChild(span);
  } else {
    const last = msg.bubble.lastChild;
    if (last && last.nodeType === Node.TEXT_NODE) last.appendData(text);
    else msg.bubble.appendChild(document.createTextNode(text));
    msg.modelText += text;
  }
  scrollDown();
}

function findingsTable(table) {
  // accepts [{col: val}], [[header...], [row...]], {columns, rows} or a preformatted string
  if (!table || (Array.isArray(table) && table.length === 0)) return null;
  const wrap = el("div", "findings-wrap");
  let columns, rows;
  if (typeof table === "string") {
    // a Markdown table (what ming.safety returns): | a | b | lines, the second one the --- separator
    const lines = table.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("|"));
    const cells = (l) => l.replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
    if (lines.length < 2) { wrap.appendChild(el("pre", "", table)); return wrap; }
    columns = cells(lines[0]);
    rows = lines.slice(1).filter((l) => !/^\|[\s:|-]+\|?$/.test(l)).map(cells);
  } else if (Array.isArray(table) && typeof table[0] === "object" && !Array.isArray(table[0])) {
    columns = [...new Set(table.flatMap((r) => Object.keys(r)))];
    rows = table.map((r) => columns.map((c) => r[c]));
  } else if (Array.isArray(table)) {
    columns = table[0]; rows = table.slice(1);
  } else if (table.columns && table.rows) {
    columns = table.columns;
    rows = table.rows.map((r) => (Array.isArray(r) ? r : columns.map((c) => r[c])));
  } else { wrap.appendChild(el("pre", "", JSON.stringify(table, null, 2))); return wrap; }
  const t = el("table", "findings");
  t.dataset.testid = "findings";
  const head = t.createTHead().insertRow();
  columns.forEach((c) => head.appendChild(el("th", "", String(c))));
  const body = t.createTBody();
  rows.forEach((r) => { const tr = body.insertRow(); r.forEach((v) => { tr.insertCell().textContent = v == null ? "" : String(v); }); });
  wrap.appendChild(t);
  return wrap;
}

function inlineMarkdown(parent, text) {
  // **bold** only; everything else stays text (never innerHTML: the text may come from the model)
  text.split(/(\*\*[^*]+\*\*)/).forEach((part) => {
    if (/^\*\*[^*]+\*\*$/.test(part)) parent.appendChild(el("strong", "", part.slice(2, -2)));
    else if (part) parent.appendChild(document.createTextNode(part));
  });
}

function renderSafetyText(span) {
  // the safety layer writes Markdown: tables become HTML tables, **bold** becomes bold
  const text = span.textContent;
  const out = el("span", "safety-text");
  let table = [];
  let hadTable = false;
  const flush = () => {
    if (table.length >= 2) { out.appendChild(findingsTable(table.join("\n"))); hadTable = true; }
    else table.forEach((l) => inlineMarkdown(out, l + "\n"));
    table = [];
  };
  for (const line of text.split("\n")) {
    if (line.trim().startsWith("|")) { table.push(line); continue; }
    flush();
    inlineMarkdown(out, line + "\n");
  }
  flush();
  if (out.lastChild && out.lastChild.nodeType === Node.TEXT_NODE) out.lastChild.data = out.lastChild.data.replace(/\n$/, "");
  span.replaceWith(out);
  return hadTable;
}

function showSafety(msg, safety) {
  let inlineTable = false;
  msg.bubble.querySelectorAll(".safety-text").forEach((span) => { inlineTable = renderSafetyText(span) || inlineTable; });
  if (!safety) return;
  const triggered = safety.triggered || [];
  const action = safety.action || "";
  if (triggered.length || (action && action !== "answer")) {
    const ids = triggered.map((t) => t.rule_id || t.id || t.name || JSON.stringify(t)).join(", ");
    const label = { escalate: "⚠️ 紧急情况提示 (escalation)", refuse: "⛔ 无法回答 (refused)" }[action] || "ℹ️ 安全提示";
    const n = el("div", action === "answer" ? "notice info" : "notice", `${label}${ids ? " · 触发规则 rules: " + ids : ""}`);
    n.dataset.testid = "safety-notice";
    msg.stack.appendChild(n);
  }
  const table = inlineTable ? null : findingsTable(safety.findings_table);
  if (table) {
    msg.stack.appendChild(el("div", "meta", "报告解读 findings"));
    msg.stack.appendChild(table);
  }
}

const KIND_LABEL = { ask: "追问中", answer_then_ask: "回答后继续追问", assess: "已给出初步判断",
                     answer: "回答追问", escalate: "紧急：请立即就医" };

function showConsult(c) {
  // the consultation controller's state after this turn (the `ming_consult` field): candidates with the
  // findings that support them, what is known, red flags, the next question
  const panel = $("consult-panel");
  if (!c || state.mode !== "consult") { panel.hidden = true; return; }
  panel.hidden = false;
  $("consult-summary").textContent = KIND_LABEL[c.kind] || c.kind;
  const ol = $("consult-candidates");
  ol.replaceChildren();
  for (const cand of c.candidates || []) {
    const li = el("li");
    li.appendChild(el("strong", "", cand.name));
    li.appendChild(el("span", "prob", ` ${Math.round(100 * cand.prob)}%`));
    li.appendChild(el("div", "support", "支持：" + ((cand.supporting || []).join("、") || "-")
      + ((cand.against || []).length ? "　不支持：" + cand.against.join("、") : "")));
    ol.appendChild(li);
  }
  if (!ol.children.length) ol.appendChild(el("li", "muted", "（还没有足够的信息）"));
  const f = c.findings || {}, st = c.state || {};
  const join = (xs, sep) => (xs || []).join(sep || "、");
  const rows = [["主诉", st.chief_complaint || ""], ["有", join(f.present)], ["没有", join(f.absent)],
    ["部位", join(f.sites)], ["性质", join(f.character)], ["时间", join(f.duration)],
    ["体温", f.temperature != null ? `${f.temperature}℃` : ""], ["诱因", join(f.triggers)],
    ["既往史", join(f.history, "；")], ["用药", join(f.medication, "；")], ["过敏", join(f.allergy, "；")],
    ["怀孕", join(f.pregnancy, "；")],
    ["年龄/性别", [f.age != null ? `${f.age}岁` : "", f.sex || ""].filter(Boolean).join(" ")]];
  const dl = $("consult-known");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    if (!v) continue;
    dl.appendChild(el("dt", "", k));
    dl.appendChild(el("dd", "", v));
  }
  if (!dl.children.length) dl.appendChild(el("dd", "muted", "（还没有）"));
  const flags = c.red_flags || [];
  $("consult-flags-box").hidden = !flags.length;
  $("consult-flags").textContent = flags.map((x) => `${x.suspicion}（${join(x.findings, "+")}）`).join("；");
  $("consult-next-box").hidden = !c.question;
  $("consult-next").textContent = c.question ? c.question.text : "";
}

function showError(msg, text) {
  const n = el("div", "notice error", text);
  n.dataset.testid = "error";
  msg.stack.appendChild(n);
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
}

async function ask(question) {
  addUser(question);
  state.history.push({ role: "user", content: question });
  const msg = addAssistant();
  setBusy(true);
  const controller = new AbortController();
  state.controller = controller;
  const headers = { "Content-Type": "application/json" };
  if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
  let finish = null, safety = null, usage = null, info = null, consult = null, grounding = null;
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", headers, signal: controller.signal,
      body: JSON.stringify({ messages: state.history, mode: state.mode, stream: true,
                             stream_options: { include_usage: true }, truncate: true }),
    });
    if (!resp.ok) {
      let text = `HTTP ${resp.status}`;
      try { text = (await resp.json()).error.message; } catch (e) { /* not JSON */ }
      if (resp.status === 401) { $("auth").hidden = false; text += " — 请在下方输入 API key"; }
      if (resp.status === 429 || resp.status === 503) text += ` (retry after ${resp.headers.get("Retry-After") || "?"} s)`;
      throw new Error(text);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const obj = JSON.parse(data);
          if (obj.error) throw new Error(obj.error.message);
          if (obj.ming) info = obj.ming;
          if (obj.usage) usage = obj.usage;
          for (const ch of obj.choices || []) {
            if (ch.index !== 0) continue;
            if (ch.delta && ch.delta.content) appendText(msg, ch.delta.content, ch.ming_kind);
            if (ch.finish_reason) {
              finish = ch.finish_reason; safety = ch.ming_safety || null; consult = ch.ming_consult || consult;
              grounding = ch.ming_grounding || null;
            }
          }
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") finish = "stopped";
    else showError(msg, "出错了 error: " + err.message);
  } finally {
    msg.bubble.classList.remove("streaming");
    setBusy(false);
    state.controller = null;
  }
  if (msg.modelText || finish) {
    state.history.push({ role: "assistant", content: msg.modelText });
  } else {
    state.history.pop(); // nothing came back: forget the question so it can be asked again
  }
  showSafety(msg, safety);
  if (consult) showConsult(consult);
  if (info && info.truncated_exchanges) {
    msg.stack.appendChild(el("div", "notice info", `对话过长，已省略最早的 ${info.truncated_exchanges} 轮 (oldest exchanges dropped)`));
  }
  const parts = [];
  if (grounding && grounding.regenerated && !grounding.fallback) parts.push("解释与检验结果不符，已重新生成 (regenerated)");
  if (grounding && grounding.fallback) parts.push("模型解释与检验结果不符，改用按结果整理的说明 (fallback)");
  if (grounding && grounding.dropped_sentences) parts.push(`略去 ${grounding.dropped_sentences} 句无法与检验结果核对的解释 (precision first)`);
  if (finish === "length") parts.push("回答达到长度上限 (max tokens)");
  if (finish === "stopped") parts.push("已停止 (stopped)");
  if (usage) parts.push(`${usage.completion_tokens} tokens`);
  if (parts.length) msg.stack.appendChild(el("div", "meta", parts.join(" · ")));
  msg.row.dataset.done = "1";
  scrollDown();
}

function newChat() {
  if (state.controller) state.controller.abort();
  state.history = [];
  for (const n of [...$("log").querySelectorAll(".msg")]) n.remove();
  showConsult(null);
  $("welcome").hidden = false;
  $("input").focus();
}

function setMode(mode) {
  if (mode === state.mode) return;
  state.mode = mode;
  document.querySelectorAll(".mode").forEach((b) => {
    const on = b.dataset.mode === mode;
    b.classList.toggle("active", on);
    b.setAttribute("aria-selected", on ? "true" : "false");
  });
  $("welcome-qa").hidden = mode !== "qa";
  $("welcome-consult").hidden = mode !== "consult";
  newChat(); // the modes use different system prompts: start over
}

document.querySelectorAll(".mode").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
$("new-chat").addEventListener("click", newChat);
$("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
$("api-key").addEventListener("change", () => sessionStorage.setItem("ming-api-key", $("api-key").value.trim()));
$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("input").value.trim();
  if (!q || state.busy) return;
  $("input").value = "";
  ask(q);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("ask").requestSubmit(); }
});

fetch("/health").then((r) => r.json()).then((h) => {
  if (h.disclaimer) $("disclaimer").textContent = h.disclaimer;
  if (h.auth_required && !sessionStorage.getItem("ming-api-key")) $("auth").hidden = false;
  setStatus(`模型 ${h.model} · ${h.backend} · 安全层 safety ${h.safety}`);
}).catch(() => setStatus("server unreachable"));
