// The little script the pages need: forms that submit once, and the signature pad.
// Served by the package itself (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  function submitOnce(form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) return;
      if (form.dataset.submitted === "yes") {
        event.preventDefault();
        return;
      }
      form.dataset.submitted = "yes";
      form.querySelectorAll("button").forEach(function (b) {
        b.setAttribute("aria-disabled", "true");
      });
    });
    // Coming back with the back button shows the form fresh.
    window.addEventListener("pageshow", function () {
      form.dataset.submitted = "";
    });
  }

  function signaturePad(form) {
    var canvas = form.querySelector("[data-pad]");
    var field = form.querySelector("[data-drawing]");
    var methods = form.querySelector("[data-methods]");
    var typedName = form.querySelector("input[name=typed_name]");
    var ctx = canvas.getContext("2d");
    var inked = false;
    var drawing = false;
    var last = null;

    function setUp() {
      var ratio = window.devicePixelRatio || 1;
      var width = canvas.clientWidth || 600;
      var height = canvas.clientHeight || 200;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.lineWidth = 2.5;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.strokeStyle = "#111";
      inked = false;
      field.value = "";
    }

    function point(event) {
      var box = canvas.getBoundingClientRect();
      return { x: event.clientX - box.left, y: event.clientY - box.top };
    }

    canvas.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      drawing = true;
      last = point(event);
      ctx.beginPath();
      ctx.arc(last.x, last.y, 0.8, 0, Math.PI * 2);
      ctx.fillStyle = "#111";
      ctx.fill();
      inked = true;
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      if (!events.length) events = [event];
      events.forEach(function (e) {
        var p = point(e);
        ctx.beginPath();
        ctx.moveTo(last.x, last.y);
        ctx.lineTo(p.x, p.y);
        ctx.stroke();
        last = p;
      });
      inked = true;
    });
    function stop() {
      drawing = false;
      last = null;
    }
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);

    form.querySelector("[data-clear]").addEventListener("click", function () {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      setUp();
    });

    function chosen() {
      var checked = form.querySelector("input[name=method]:checked");
      return checked ? checked.value : "typed";
    }
    function show() {
      var method = chosen();
      form.querySelectorAll("[data-method]").forEach(function (part) {
        part.hidden = part.dataset.method !== method;
      });
      typedName.required = method === "typed";
      if (method === "drawn") setUp();
    }
    form.querySelectorAll("input[name=method]").forEach(function (radio) {
      radio.addEventListener("change", show);
    });

    form.addEventListener("submit", function (event) {
      if (chosen() !== "drawn") {
        field.value = "";
        return;
      }
      if (!inked) {
        event.preventDefault();
        var help = form.querySelector("#draw-help");
        help.textContent = "Draw your signature in the box first (or choose to type your name).";
        help.setAttribute("role", "alert");
        return;
      }
      field.value = canvas.toDataURL("image/png");
    });

    methods.hidden = false;
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-once]").forEach(submitOnce);
    var pad = document.querySelector("form [data-pad]");
    if (pad) signaturePad(pad.closest("form"));
    document.querySelectorAll("input.link").forEach(function (input) {
      input.addEventListener("focus", function () {
        input.select();
      });
    });
  });
})();
