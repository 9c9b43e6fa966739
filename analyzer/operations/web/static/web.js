// rca web: the live step tree of a run, and the --insecure confirmation.
// Loaded from the server itself (CSP script-src 'self'); the pages work without it:
// a running check's page then reloads itself until the report is ready.
"use strict";

(function () {
  // "I understand" is shown only once "ignore trust" is ticked (it is always checked
  // on the server, with or without this script).
  const insecure = document.getElementById("f-insecure");
  const confirmField = document.getElementById("insecure-confirm");
  if (insecure && confirmField) {
    const sync = function () {
      confirmField.hidden = !insecure.checked;
    };
    insecure.addEventListener("change", sync);
    sync();
  }

  const run = document.getElementById("run");
  if (!run || run.dataset.done === "1" || !window.EventSource) {
    return;
  }
  const checks = document.getElementById("checks");
  const summary = document.getElementById("summary");
  const status = document.getElementById("live-status");

  // The HTML of a finished probe and of the final report comes from the server's report
  // templates, where every server-controlled text is already escaped.
  function slot(probe) {
    let element = document.getElementById("probe-" + probe);
    if (!element) {
      element = document.createElement("div");
      element.className = "live-probe";
      element.id = "probe-" + probe;
      checks.appendChild(element);
    }
    return element;
  }

  function pending(element, title, state) {
    const card = document.createElement("div");
    card.className = "card pending";
    const spinner = document.createElement("span");
    spinner.className = "spinner";
    spinner.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "t";
    name.textContent = title;
    const note = document.createElement("span");
    note.className = "muted state";
    note.textContent = state === "started" ? "running…" : "waiting";
    card.append(spinner, name, " ", note);
    element.replaceChildren(card);
    element.dataset.state = state;
    element.dataset.title = title;
  }

  function progress() {
    const all = checks.querySelectorAll(".live-probe").length;
    const done = checks.querySelectorAll('.live-probe[data-state="finished"]').length;
    status.textContent = "Running: " + done + " of " + all + " checks finished.";
  }

  const source = new EventSource(
    run.dataset.events + "?after=" + encodeURIComponent(run.dataset.seen || "0")
  );
  source.addEventListener("rca", function (message) {
    const event = JSON.parse(message.data);
    if (event.kind === "planned") {
      pending(slot(event.probe), event.title, "planned");
    } else if (event.kind === "started") {
      const element = slot(event.probe);
      if (element.dataset.state !== "finished") {
        const title = element.dataset.title || element.querySelector(".t")?.textContent || event.probe;
        pending(element, title, "started");
      }
    } else if (event.kind === "finished") {
      const element = slot(event.probe);
      if (event.html) {  // a replay after the end has none: "done" brings the sections
        element.innerHTML = event.html;
      }
      element.dataset.state = "finished";
    } else if (event.kind === "done") {
      source.close();
      summary.innerHTML = event.summary;
      checks.innerHTML = event.checks;
      run.dataset.done = "1";
      status.textContent = "Finished: the verdict and the reports are below.";
      return;
    }
    progress();
  });
})();
