// The owner's page: sign-in, the books of a date range for all terminals, a shop or one, charts drawn as SVG,
// each terminal's last contact and queue. Amounts arrive as integer minor units and are formatted as text here
// (no floating point). Chinese and English; the choice is kept in this browser.
"use strict";

const TEXT = {
  "zh-CN": {
    title: "营业后台", other_language: "English", sign_in: "登录", sign_out: "退出", name: "用户名", password: "密码",
    from: "从", to: "到", scope: "范围", today: "今天", csv: "导出 CSV", report_csv: "报表 CSV", sales: "销售",
    refunds: "退货", net: "净额", voided: "撤销", declined: "拒绝", by_hour: "按小时销售", by_method: "支付方式",
    best_sellers: "畅销商品", anomalies: "值得注意", operators: "按收银员", operator: "收银员", terminals: "终端",
    terminal: "终端", shop: "门店", last_contact: "最近联系", queue: "待传", settlements: "结算", batch: "批次",
    balance: "对账", all: "全部终端", shop_of: "门店：", nothing_unusual: "没有异常", no_data: "暂无数据",
    never: "从未", seconds_ago: "秒前", minutes_ago: "分钟前", hours_ago: "小时前", in_balance: "平账",
    out_of_balance: "不平", not_signed_in: "未登录收银员", wrong_password: "用户名或密码错误", updated: "更新于",
    count: "笔", behind: "落后", rows: "记录", refused: "未收记录",
    "card swipe": "刷卡", "card contactless": "闪付", "wallet (code shown)": "扫码（主扫）",
    "wallet (code scanned)": "付款码（被扫）", "refund share": "退货比例高", "declines on one card": "同一卡多次拒绝",
    "outside opening hours": "营业时间外销售", "fallback swipes of a chip card": "芯片卡刷磁条",
    "fallbacks from chip": "芯片失败后降级刷卡", "card fallback (chip failed)": "降级刷卡", "card chip": "插卡",
    "refund not to the paying card": "现金退还卡/钱包付款", "just under a limit": "金额刚低于限额",
    find_sale: "查找交易", sale_no: "交易号", find: "查找", no_sale: "找不到这笔交易", signature: "签名",
    no_signature: "无电子签名", time: "时间", amount: "金额", status: "状态", method: "支付方式", card: "卡号",
    auth_code: "授权码", rrn: "参考号", cvm: "持卡人验证", items: "商品", sale: "消费", void: "撤销", refund: "退货",
    approved: "成功", pending: "处理中", failed: "失败", unknown: "结果未知", reversed: "已冲正",
    set_aside_title: "未收记录", set_aside_help: "后台未能保存的记录（终端日志中仍有）。店主可请终端重传。",
    row: "记录", version: "版本", reason: "原因", state: "状态", retry: "重传", transaction: "交易", line: "商品行",
    settlement: "结算", open: "未收", asked: "已请求重传", stored: "重传后已收", set_aside_again: "新版本也未收",
    missing: "终端日志中没有", earlier_journal: "来自已更换的日志", retry_failed: "未能请求重传",
    busy: "登录人数过多，请稍后再试",
  },
  en: {
    title: "Back office", other_language: "中文", sign_in: "Sign in", sign_out: "Sign out", name: "Name",
    password: "Password", from: "From", to: "To", scope: "Terminals", today: "Today", csv: "Export CSV",
    report_csv: "Report CSV", sales: "Sales", refunds: "Refunds", net: "Net", voided: "Voided", declined: "Declined",
    by_hour: "Sales by hour", by_method: "Payment methods", best_sellers: "Best sellers", anomalies: "Worth a look",
    operators: "By cashier", operator: "Cashier", terminals: "Terminals", terminal: "Terminal", shop: "Shop",
    last_contact: "Last contact", queue: "Waiting", settlements: "Settlements", batch: "Batch", balance: "Balance",
    all: "All terminals", shop_of: "Shop: ", nothing_unusual: "Nothing unusual", no_data: "No data yet",
    never: "never", seconds_ago: "s ago", minutes_ago: "min ago", hours_ago: "h ago", in_balance: "in balance",
    out_of_balance: "OUT OF BALANCE", not_signed_in: "not signed in", wrong_password: "Wrong name or password",
    updated: "Updated", count: "", behind: "behind", rows: "rows", refused: "Not taken",
    find_sale: "Find a sale", sale_no: "Transaction no.", find: "Find", no_sale: "No such sale", signature: "Signature",
    no_signature: "No electronic signature", time: "Time", amount: "Amount", status: "Status", method: "Method",
    card: "Card", auth_code: "Auth code", rrn: "Reference", cvm: "Verified by", items: "Items", sale: "sale",
    set_aside_title: "Rows not taken", set_aside_help: "Rows the back office could not store (the terminal's journal still has them). The owner may ask the terminal to send one again.",
    row: "Row", version: "Version", reason: "Reason", state: "State", retry: "Retry", transaction: "transaction",
    line: "basket line", settlement: "settlement", open: "not taken", asked: "asked again", stored: "taken on retry",
    set_aside_again: "a later version set aside", missing: "not in the terminal's journal", earlier_journal: "from a replaced journal",
    retry_failed: "Could not ask again", busy: "Too many sign-ins at once: try again in a moment",
  },
};

let lang = localStorage.getItem("lang") || (((navigator.languages || [])[0] || navigator.language || "").startsWith("zh") ? "zh-CN" : "en");
let last = null;
let timer = null;
let sale = null;
let asides = null;
const $ = (id) => document.getElementById(id);
const t = (key) => (TEXT[lang][key] !== undefined ? TEXT[lang][key] : key);

function money(minor, exponent) {
  const digits = String(Math.abs(minor)).padStart(exponent + 1, "0");
  const whole = exponent ? digits.slice(0, -exponent) : digits;
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (minor < 0 ? "-" : "") + grouped + (exponent ? "." + digits.slice(-exponent) : "");
}

function localDate(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function translate() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  document.title = "Countertop · " + t("title");
  if (last) render(last);
  if (sale) showSale(sale);
  if (asides) showSetAside(asides);
}

async function api(path, options) {
  const answer = await fetch(path, { credentials: "same-origin", ...options });
  if (answer.status === 401) { showSignIn(); throw new Error("signed out"); }
  if (!answer.ok) throw new Error((await answer.text()) || answer.statusText);
  return answer.json();
}

function post(path, body) {
  return fetch(path, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
                       body: JSON.stringify(body) });
}

function showSignIn() {
  clearInterval(timer);
  $("books").hidden = true; $("signout").hidden = true; $("signin").hidden = false;
}

async function start() {
  let me;
  try { me = await api("/api/me"); } catch (e) { return; }
  $("signin").hidden = true; $("books").hidden = false; $("signout").hidden = false;
  const scope = $("scope");
  scope.replaceChildren();
  const option = (value, label) => { const o = document.createElement("option"); o.value = value; o.textContent = label; scope.append(o); };
  option("", t("all"));
  [...new Set(me.terminals.map((x) => x.shop).filter(Boolean))].forEach((s) => option("shop:" + s, t("shop_of") + s));
  me.terminals.forEach((x) => option("terminal:" + x.terminal_id, x.terminal_id + (x.shop ? " · " + x.shop : "")));
  $("terminal-list").replaceChildren(...me.terminals.map((x) => { const o = document.createElement("option"); o.value = x.terminal_id; return o; }));
  const today = localDate(new Date());
  if (!$("from").value) { $("from").value = today; $("to").value = today; }
  await load();
  clearInterval(timer);
  timer = setInterval(() => { if ($("to").value >= localDate(new Date())) load().catch(() => {}); }, 5000);
}

function query() {
  const q = new URLSearchParams({ from: $("from").value, to: $("to").value });
  const [kind, value] = $("scope").value.split(/:(.*)/s);
  if (kind === "shop") q.set("shop", value);
  if (kind === "terminal") q.set("terminal", value);
  return q.toString();
}

async function load() {
  if ($("from").value > $("to").value) $("to").value = $("from").value;
  const data = await api("/api/report?" + query());
  $("csv").href = "/api/export.csv?" + query();
  $("report-csv").href = "/api/report.csv?" + query();
  last = data;
  render(data);
  asides = await api("/api/set-aside?" + query());
  showSetAside(asides);
}

function showSetAside(a) {  // the rows the office set aside: never a card number (it keeps no body of them)
  $("set-aside-box").hidden = !a.rows.length;
  const body = $("set-aside").tBodies[0];
  body.replaceChildren();
  a.rows.forEach((r) => {
    const tr = document.createElement("tr");
    const what = `${t(r.entity)} ${r.row_id}${r.entity === "line" && r.line_no ? "/" + r.line_no : ""}`;
    [r.terminal_id, what, String(r.version), new Date(r.at).toLocaleString(lang), r.reason, t(r.state)].forEach((c) => {
      const td = document.createElement("td"); td.textContent = c; tr.append(td);
    });
    const cell = document.createElement("td");
    if (r.can_retry) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "retry"; b.textContent = t("retry");
      b.dataset.terminal = r.terminal_id; b.dataset.version = String(r.version);
      b.addEventListener("click", () => retry(r.terminal_id, r.version));
      cell.append(b);
    }
    tr.append(cell);
    if (r.state === "open" || r.state === "missing") tr.classList.add("late");
    body.append(tr);
  });
}

async function retry(terminal, version) {
  $("set-aside-error").textContent = "";
  const answer = await post("/api/set-aside/retry", { terminal_id: terminal, version });
  if (!answer.ok) { $("set-aside-error").textContent = `${t("retry_failed")}: ${await answer.text()}`; return; }
  load().catch(() => {});
}

function render(d) {
  const m = (v) => d.currency + " " + money(v, d.exponent);
  const n = (c) => `${c} ${t("count")}`.trim();
  $("total-sales").textContent = m(d.sales.amount); $("count-sales").textContent = n(d.sales.count);
  $("total-refunds").textContent = m(d.refunds.amount); $("count-refunds").textContent = n(d.refunds.count);
  $("total-net").textContent = m(d.net);
  $("total-voided").textContent = m(d.voids.amount); $("count-voided").textContent = n(d.voids.count);
  $("count-declined").textContent = String(d.declined);
  const hours = Array.from({ length: 24 }, (_, h) => { const x = d.by_hour.find((b) => b.hour === h); return { label: String(h).padStart(2, "0"), value: x ? x.amount : 0 }; });
  columns($("chart-hour"), hours, d);
  bars($("chart-method"), d.methods.map((x) => ({ label: `${t(x.name)} ${Math.floor(x.permille / 10)}.${x.permille % 10}%`, value: x.amount })), d, false);
  bars($("chart-items"), d.best_by_revenue.slice(0, 8).map((x) => ({ label: `${x.name} ×${x.quantity}`, value: x.amount })), d, true);
  const list = $("anomalies");
  list.replaceChildren();
  (d.anomalies.length ? d.anomalies : [null]).forEach((a) => {
    const li = document.createElement("li");
    if (!a) { li.textContent = t("nothing_unusual"); list.append(li); return; }
    li.append(`${t(a.rule)}: ${a.detail} (${t("rows")} `);
    a.rows.slice(0, 12).forEach((row, i) => {  // each row TERMINAL:ID opens that sale
      const link = document.createElement("a");
      link.href = "#sale"; link.textContent = row; link.className = "row";
      link.addEventListener("click", (ev) => { ev.preventDefault(); const [term, id] = row.split(/:(?=[^:]*$)/); findSale(term, id); });
      li.append(i ? ", " : "", link);
    });
    li.append(`${a.count > 12 ? " …" : ""})`);
    list.append(li);
  });
  rows($("operators"), d.operators.map((o) => [o.operator || t("not_signed_in"), `${m(o.sales_amount)} (${o.sales_count})`, `${m(o.refund_amount)} (${o.refund_count})`]));
  rows($("terminals"), d.terminals.map((x) => [x.terminal_id, x.shop, ago(x.seconds_since), x.queue_depth === null ? "–" : String(x.queue_depth),
                                             x.last_refusal ? `${x.set_aside} · ${x.last_refusal}` : String(x.set_aside)]),
       (tr, i) => { const x = d.terminals[i]; if (x.seconds_since === null || x.seconds_since > 600 || x.queue_depth > 0 || x.last_refusal) tr.classList.add("late"); });
  rows($("settlements"), d.settlements.map((s) => [s.terminal_id, String(s.batch), m(s.debit_amount - s.credit_amount), s.in_balance ? t("in_balance") : t("out_of_balance")]));
  $("status").textContent = `${t("updated")} ${new Date().toLocaleTimeString(lang)}`;
}

async function findSale(terminal, id) {
  $("sale-terminal").value = terminal; $("sale-id").value = id;
  $("sale-error").textContent = "";
  try {
    sale = await api("/api/sale?" + new URLSearchParams({ terminal, id }).toString());
  } catch (e) {
    sale = null; $("sale").hidden = true;
    if (e.message !== "signed out") $("sale-error").textContent = t("no_sale");
    return;
  }
  showSale(sale);
  $("sale").scrollIntoView({ block: "nearest" });
}

function showSale(s) {
  const m = (v) => s.currency + " " + money(v, s.exponent);
  const fields = [
    [t("terminal"), `${s.terminal_id}:${s.id}`], [t("time"), s.created_local], [t("amount"), m(s.amount)],
    [t("status"), `${t(s.kind)} · ${t(s.status)}`], [t("method"), t(`${s.method} ${s.entry_mode}`)],
    [t("card"), s.masked_pan || "–"], [t("auth_code"), s.auth_code || "–"], [t("rrn"), s.rrn || "–"],
    [t("cvm"), s.cvm || "–"], [t("operator"), s.operator || t("not_signed_in")],
  ];
  if (s.lines.length) fields.push([t("items"), s.lines.map((l) => `${l.name} ×${l.quantity}`).join(", ")]);
  rows($("sale-fields"), fields);
  const signed = s.signature && s.signature.image, shown = $("sale-signature");
  const src = "/api/signature.png?" + new URLSearchParams({ terminal: s.terminal_id, id: String(s.id) }).toString();
  if (!signed) $("sale-image").replaceChildren();  // the <img> is made only for a sale that has a signature
  else if (!shown || shown.getAttribute("src") !== src) {
    const img = document.createElement("img");
    img.id = "sale-signature"; img.src = src; img.alt = t("signature");
    $("sale-image").replaceChildren(img);
  } else shown.alt = t("signature");
  const note = s.signature && s.signature.note;
  $("sale-unsigned").textContent = signed ? "" : t("no_signature") + (note ? " · " + note : "");
  $("sale").hidden = false;
}

function ago(seconds) {
  if (seconds === null) return t("never");
  if (seconds < 90) return `${Math.round(seconds)} ${t("seconds_ago")}`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} ${t("minutes_ago")}`;
  return `${Math.round(seconds / 3600)} ${t("hours_ago")}`;
}

function rows(table, cells, mark) {
  const body = table.tBodies[0];
  body.replaceChildren();
  cells.forEach((line, i) => {
    const tr = document.createElement("tr");
    line.forEach((c) => { const td = document.createElement("td"); td.textContent = c; tr.append(td); });
    if (mark) mark(tr, i);
    body.append(tr);
  });
}

const SVG = "http://www.w3.org/2000/svg";
function svg(w, h) { const s = document.createElementNS(SVG, "svg"); s.setAttribute("viewBox", `0 0 ${w} ${h}`); s.setAttribute("role", "img"); return s; }
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function columns(box, data, d) {
  const w = 480, h = 200, left = 8, bottom = 18, peak = Math.max(0, ...data.map((x) => x.value));
  const s = svg(w, h), slot = (w - left * 2) / data.length;
  if (!peak) s.append(el("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, t("no_data")));
  data.forEach((x, i) => {
    const height = peak ? Math.max(x.value ? 1 : 0, (x.value / peak) * (h - bottom - 16)) : 0;
    if (height) {
      const r = el("rect", { x: left + i * slot + 2, y: h - bottom - height, width: slot - 4, height, class: "bar" });
      r.append(el("title", {}, `${x.label}:00 ${d.currency} ${money(x.value, d.exponent)}`));
      s.append(r);
    }
    if (i % 3 === 0) s.append(el("text", { x: left + i * slot + 2, y: h - 4 }, x.label));
  });
  if (peak) s.append(el("text", { x: left, y: 11 }, `${d.currency} ${money(peak, d.exponent)}`));
  box.replaceChildren(s);
}

function bars(box, data, d, alt) {
  const w = 480, row = 26, h = Math.max(60, data.length * row + 8), peak = Math.max(0, ...data.map((x) => x.value));
  const s = svg(w, h);
  if (!peak) s.append(el("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, t("no_data")));
  data.forEach((x, i) => {
    const width = peak ? Math.max(1, (x.value / peak) * (w - 170)) : 0;
    s.append(el("text", { x: 0, y: i * row + 17 }, x.label.length > 22 ? x.label.slice(0, 21) + "…" : x.label));
    s.append(el("rect", { x: 150, y: i * row + 6, width, height: row - 10, class: alt ? "bar alt" : "bar" }));
    s.append(el("text", { x: Math.min(150 + width + 4, w - 60), y: i * row + 17 }, money(x.value, d.exponent)));
  });
  box.replaceChildren(s);
}

document.addEventListener("DOMContentLoaded", () => {
  translate();
  $("lang").addEventListener("click", () => { lang = lang === "en" ? "zh-CN" : "en"; localStorage.setItem("lang", lang); translate(); start(); });
  $("signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    const answer = await post("/api/login", { name: $("name").value, password: $("password").value });
    if (!answer.ok) { $("signin-error").textContent = t(answer.status === 503 ? "busy" : "wrong_password"); return; }
    $("password").value = "";
    start();
  });
  $("signout").addEventListener("click", async () => { await post("/api/logout", {}); last = null; sale = null; asides = null; $("set-aside-box").hidden = true; $("sale").hidden = true; showSignIn(); });
  $("find-sale").addEventListener("submit", (ev) => { ev.preventDefault(); findSale($("sale-terminal").value.trim(), $("sale-id").value.trim()); });
  ["from", "to", "scope"].forEach((id) => $(id).addEventListener("change", () => load().catch(() => {})));
  $("today").addEventListener("click", () => { const d = localDate(new Date()); $("from").value = d; $("to").value = d; load().catch(() => {}); });
  start();
});
