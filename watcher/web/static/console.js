// Keeps the console's overview current without reloading: polls /console/live.json (same
// origin) and writes what changed with textContent only, never as markup.
"use strict";
(function () {
  var poll = parseInt(document.body.getAttribute("data-poll") || "15", 10) * 1000;

  function text(node, value) {
    if (node && node.textContent !== value) node.textContent = value;
  }

  function cell(row, value, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (value instanceof Node) td.appendChild(value); else td.textContent = value;
    row.appendChild(td);
    return td;
  }

  function problemRow(p, csrf) {
    var tr = document.createElement("tr");
    tr.className = p.priority + (p.late ? " late" : "");
    var link = document.createElement("a");
    link.href = "/console/incidents/" + encodeURIComponent(p.id);
    link.textContent = "#" + p.id;
    cell(tr, link);
    var pri = document.createElement("span");
    pri.className = "pri " + p.priority;
    pri.textContent = p.priority;
    cell(tr, pri);
    cell(tr, p.state + (p.note ? " (" + p.note + ")" : ""));
    cell(tr, p.outage ? "site-wide outage: " + p.members + " of " + p.total + " targets" : p.target);
    cell(tr, p.summary);
    cell(tr, p.age);
    cell(tr, p.respond).setAttribute("data-due", p.respond_due);
    cell(tr, p.resolve).setAttribute("data-due", p.resolve_due);
    cell(tr, p.ack_by || "-");
    var tickets = document.createElement("span");
    p.tickets.forEach(function (t, i) {
      if (i) tickets.appendChild(document.createTextNode(", "));
      if (t.url) {
        var a = document.createElement("a");
        a.href = t.url; a.rel = "noreferrer"; a.textContent = t.id;
        tickets.appendChild(a);
      } else tickets.appendChild(document.createTextNode(t.id));
    });
    if (!p.tickets.length) tickets.textContent = "-";
    cell(tr, tickets);
    if (csrf !== null) {
      var td = cell(tr, "");
      if (p.state === "open") {
        var form = document.createElement("form");
        form.method = "post"; form.action = "/console/incidents/" + encodeURIComponent(p.id) + "/ack";
        form.className = "inline";
        var hidden = document.createElement("input");
        hidden.type = "hidden"; hidden.name = "csrf"; hidden.value = csrf;
        var button = document.createElement("button");
        button.type = "submit"; button.textContent = "Acknowledge";
        form.appendChild(hidden); form.appendChild(button); td.appendChild(form);
      }
    }
    return tr;
  }

  function apply(data) {
    text(document.getElementById("now"), data.now);
    text(document.getElementById("heading"), data.heading);
    var body = document.getElementById("problems");
    if (body) {
      var token = document.querySelector("input[name=csrf]");
      var csrf = token ? token.value : null;
      var rows = document.createDocumentFragment();
      data.problems.forEach(function (p) { rows.appendChild(problemRow(p, csrf)); });
      body.replaceChildren(rows);
    }
    document.querySelectorAll("tr[data-key]").forEach(function (row) {
      var check = data.checks[row.getAttribute("data-key")];
      if (!check) return;
      var status = row.querySelector("[data-field=status]");
      if (status) { text(status, check.status); status.className = "status " + check.status; }
      text(row.querySelector("[data-field=message]"), check.message);
      row.className = check.status;
    });
  }

  function refresh() {
    if (document.hidden) return;
    fetch("/console/live.json" + window.location.search, {credentials: "same-origin"})
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (data) { if (data) apply(data); })
      .catch(function () { /* the next poll tries again */ });
  }

  if (document.getElementById("heading")) {
    window.setInterval(refresh, poll);
    document.addEventListener("visibilitychange", refresh);
  }
})();
