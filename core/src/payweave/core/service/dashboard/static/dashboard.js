/* payweave partner dashboard: progressive enhancement only (every page works without it). */
"use strict";

(function () {
  function csrfOf(form) {
    var input = form.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }

  /* ---- confirmations for destructive buttons ------------------------------------------- */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  /* ---- the integration status card refreshes itself while a sync is pending ------------ */
  function pollCard() {
    var card = document.getElementById("integration-card");
    if (!card || card.getAttribute("data-busy") !== "true") {
      return;
    }
    var url = card.getAttribute("data-poll-url");
    window.setTimeout(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.redirected || response.status === 401) {
            window.location.reload();
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html) {
            var holder = document.createElement("div");
            holder.innerHTML = html.trim();
            var fresh = holder.firstElementChild;
            var current = document.getElementById("integration-card");
            if (fresh && current) {
              current.replaceWith(fresh);
            }
          }
          pollCard();
        })
        .catch(function () { window.setTimeout(pollCard, 3000); });
    }, 1000);
  }

  /* ---- payment-method form: validated by the engine's rules while it is edited --------- */
  function showErrors(form, result) {
    var errors = (result && result.errors) || {};
    form.querySelectorAll("[data-error-for]").forEach(function (node) {
      var name = node.getAttribute("data-error-for");
      var message = errors[name];
      var field = form.querySelector('[data-field="' + name + '"]');
      var control = form.querySelector('[name="' + name + '"]');
      node.textContent = message || "";
      node.hidden = !message;
      if (field) { field.classList.toggle("invalid", Boolean(message)); }
      if (control) {
        if (message) { control.setAttribute("aria-invalid", "true"); } else { control.removeAttribute("aria-invalid"); }
      }
    });
    var banner = document.getElementById("form-message");
    if (banner) {
      banner.textContent = (result && !result.ok && result.message) || "";
      banner.hidden = !(result && !result.ok && result.message);
    }
    var caps = form.querySelector("[data-capabilities]");
    if (caps && result && result.capabilities && result.capabilities.length) {
      caps.textContent = "Supports: " + result.capabilities.join(", ") + ".";
    }
    var state = form.querySelector("[data-validation-state]");
    if (state) { state.textContent = result && result.ok ? "Settings are valid." : ""; }
  }

  function setupValidation(form) {
    var url = form.getAttribute("data-validate-url");
    var timer = null;
    var sequence = 0;
    function validate() {
      var mine = ++sequence;
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfOf(form), "Accept": "application/json" },
        body: new FormData(form)
      })
        .then(function (response) { return response.json(); })
        .then(function (result) {
          if (mine === sequence) { showErrors(form, result); }
        })
        .catch(function () { /* the save validates again */ });
    }
    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(validate, 150);
    }
    form.addEventListener("change", later);
    form.addEventListener("input", function (event) {
      if (event.target && event.target.type !== "checkbox") { later(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    pollCard();
    document.querySelectorAll("form[data-validate-url]").forEach(setupValidation);
  });
})();
