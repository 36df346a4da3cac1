// moduletrace's incident page: draws the timelines and tables from the JSON in #report-data, a page at a time.
// Data never becomes markup: every string goes through textContent or setAttribute.
// Keys of a verdict: m module id, t trace id, s load span id, v verdict, r reason, svc load service,
// src read source, f load failed, by decided by, rs/re read window (ns from the origin), mb/ct matched by and
// creation trace (other trace only), u trace link, cause the diagnosis (failed loads); c the checks: st stage,
// v verdict, r reason, by decided by, mg margin (ms), id stage span id, ws/we stage window, b clock basis,
// bd clock-offset bound (ms, theta = clock(read) - clock(stage)), x explanation.
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var PAGE = { timelines: 20, tables: 50 };
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var state = {};

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function sv(tag, attrs, text) {
    var node = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function at(ns) {
    // an ISO time (ms precision) for ns from the origin
    return new Date(data.origin_ms + Math.floor((data.origin_ns_rest + ns) / 1e6)).toISOString();
  }
  function ms(x) { return (x >= 0 ? "" : "-") + Math.abs(x).toFixed(3) + " ms"; }
  function link(url, label) {
    var a = el("a", { href: url, rel: "noopener noreferrer", target: "_blank", "class": "trace-link" }, label);
    return a;
  }
  function traceUrl(p) {
    // a link made from the backend's template, unless the item carries its own
    return p.u || (data.link ? data.link[0] + p.t + data.link[1] : null);
  }
  function items(key) {
    return key in data.sections ? data.sections[key] : data[key];
  }

  // -- one load's timeline, to scale -----------------------------------------------------------------
  function timeline(v) {
    var W = 960, LEFT = 200, RIGHT = 24, ROW = 50, TOP = 8, AXIS = 30;
    var checks = v.c, rows = checks.length + 1;
    var H = TOP + rows * ROW + AXIS;
    var points = [v.rs, v.re];
    var bands = [];
    checks.forEach(function (c) {
      points.push(c.ws, c.we);
      if (c.bd) {
        // where the read lies on the stage's clock: read - theta for theta in [lo, hi]
        var b = { lo: v.rs - c.bd[1] * 1e6, hi: v.re - c.bd[0] * 1e6, c: c };
        if (!bands.some(function (o) { return o.lo === b.lo && o.hi === b.hi; })) bands.push(b);
        points.push(b.lo, b.hi);
      }
    });
    var d0 = Math.min.apply(null, points), d1 = Math.max.apply(null, points);
    var width = Math.max(d1 - d0, 10000); // at least 10 us
    d0 -= width * 0.06; d1 += width * 0.06;
    var zero = checks[0].ws; // the axis counts from the first stage's start
    function x(t) { return LEFT + (t - d0) / (d1 - d0) * (W - LEFT - RIGHT); }
    function bar(t0, t1, minimum) {
      var a = x(t0), b = x(t1);
      if (b - a < minimum) { var mid = (a + b) / 2; a = mid - minimum / 2; b = mid + minimum / 2; }
      return { x: a.toFixed(1), w: (b - a).toFixed(1) };
    }
    var svg = sv("svg", { "class": "timeline", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "timeline of the load of module " + v.m });
    // lanes
    for (var i = 0; i < rows; i++) {
      svg.appendChild(sv("rect", { "class": "lane", x: 0, y: TOP + i * ROW, width: W, height: ROW - 4, rx: 4 }));
    }
    // axis and ticks (ms from the first stage's start)
    var span = (d1 - d0) / 1e6, step = niceStep(span / 7);
    var first = Math.ceil((d0 - zero) / 1e6 / step) * step;
    var axisY = TOP + rows * ROW + 2;
    svg.appendChild(sv("line", { "class": "axis", x1: LEFT, x2: W - RIGHT, y1: axisY, y2: axisY }));
    for (var tick = first; zero + tick * 1e6 <= d1; tick += step) {
      var tx = x(zero + tick * 1e6);
      svg.appendChild(sv("line", { "class": "grid", x1: tx, x2: tx, y1: TOP, y2: axisY }));
      svg.appendChild(sv("text", { "class": "tick", x: tx, y: axisY + 13, "text-anchor": "middle" },
        formatTick(tick, step)));
    }
    svg.appendChild(sv("text", { "class": "tick", x: LEFT - 8, y: axisY + 13, "text-anchor": "end" },
      "ms from " + checks[0].st + " start"));
    // guide at the read's end, across the lanes
    svg.appendChild(sv("line", { "class": "guide", x1: x(v.re), x2: x(v.re), y1: TOP, y2: axisY }));
    // the creation's stages, one lane each, with the margin drawn from the read's end to the stage's start
    checks.forEach(function (c, i) {
      var y = TOP + i * ROW;
      svg.appendChild(sv("text", { "class": "lane-label", x: 8, y: y + 15 }, c.st));
      svg.appendChild(sv("text", { "class": "lane-sub", x: 8, y: y + 28 }, (c.svc || "creation") + " · " + (CLOCKS[c.b] || c.b)));
      svg.appendChild(sv("text", { "class": "lane-sub", x: 8, y: y + 40 },
        c.v.replace("_", " ") + (c.r ? " (" + c.r + ")" : "") + " · by " + c.by));
      svg.appendChild(sv("line", { "class": "guide", x1: x(c.ws), x2: x(c.ws), y1: y, y2: axisY }));
      var b = bar(c.ws, c.we, 2);
      var r = sv("rect", { "class": "stage v-" + c.v, x: b.x, y: y + 8, width: b.w, height: 14, rx: 2 });
      r.appendChild(sv("title", {}, c.st + " span " + c.id + ": " + ms((c.ws - zero) / 1e6) + " to " +
        ms((c.we - zero) / 1e6) + " (" + ms((c.we - c.ws) / 1e6) + " long), " + c.b));
      svg.appendChild(r);
      var a = x(v.re), z = x(c.ws), dy = y + 34;
      var dim = sv("line", { "class": "dim" + (c.mg < 0 ? " negative" : ""), x1: a, x2: z, y1: dy, y2: dy });
      svg.appendChild(dim);
      svg.appendChild(sv("line", { "class": "dim", x1: a, x2: a, y1: dy - 4, y2: dy + 4 }));
      svg.appendChild(sv("line", { "class": "dim", x1: z, x2: z, y1: dy - 4, y2: dy + 4 }));
      var label = "margin " + ms(c.mg);
      var lx = Math.max(a, z) + 6, anchor = "start";
      if (lx > W - RIGHT - 110) { lx = Math.min(a, z) - 6; anchor = "end"; }
      svg.appendChild(sv("text", { "class": "margin", "data-stage": c.st, x: lx, y: dy + 4, "text-anchor": anchor },
        label));
    });
    // the load's read window, on its service's lane, with the clock bound as a band
    var ry = TOP + checks.length * ROW;
    svg.appendChild(sv("text", { "class": "lane-label", x: 8, y: ry + 15 }, "read"));
    svg.appendChild(sv("text", { "class": "lane-sub", x: 8, y: ry + 28 }, "load · " + v.svc));
    svg.appendChild(sv("text", { "class": "lane-sub", x: 8, y: ry + 40 }, v.src));
    bands.forEach(function (band) {
      var b = bar(band.lo, band.hi, 2);
      var rect = sv("rect", { "class": "band", x: b.x, y: ry + 4, width: b.w, height: 24, rx: 3 });
      rect.appendChild(sv("title", {}, "where the read lies on " + band.c.st + "'s clock: offset in [" +
        band.c.bd[0] + ", " + band.c.bd[1] + "] ms (" + band.c.b + ")"));
      svg.appendChild(rect);
    });
    var rb = bar(v.rs, v.re, 2);
    var read = sv("rect", { "class": "read", x: rb.x, y: ry + 9, width: rb.w, height: 14, rx: 2 });
    read.appendChild(sv("title", {}, "read (" + v.src + "): " + ms((v.rs - zero) / 1e6) + " to " +
      ms((v.re - zero) / 1e6) + " on the load's clock"));
    svg.appendChild(read);
    if (bands.length) {
      // under the band, centred on it, kept inside the drawing
      var c0 = bands[0].c, mid = (x(bands[0].lo) + x(bands[0].hi)) / 2;
      mid = Math.min(Math.max(mid, LEFT + 120), W - RIGHT - 120);
      svg.appendChild(sv("text", { "class": "band-label", x: mid, y: ry + 40, "text-anchor": "middle" },
        "read on the creation's clock: offset in [" + c0.bd[0] + ", " + c0.bd[1] + "] ms (" + c0.b + ")"));
    }
    return svg;
  }
  function niceStep(raw) {
    var p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-6))));
    var f = [1, 2, 5, 10].find(function (f) { return f * p >= raw; });
    return f * p;
  }
  function formatTick(value, step) {
    var digits = Math.max(0, -Math.floor(Math.log10(step)));
    return (Math.abs(value) < step / 2 ? 0 : value).toFixed(Math.min(digits, 6));
  }

  // -- cards and rows --------------------------------------------------------------------------------
  var CLOCKS = {
    "same process": "same process as the load",
    "same host": "same host as the load",
    "derived bound": "other host, offset bound from RPCs",
    "tolerance": "other host, skew tolerance",
  };
  var LABELS = { race: "race", stale_read: "stale read", ambiguous: "ambiguous", clean: "clean by data" };
  function card(v, key) {
    var art = el("article", { "class": "load v-" + v.v, "data-module": v.m, "data-load-span": v.s });
    var h = el("h3");
    h.appendChild(el("span", { "class": "badge v-" + v.v }, LABELS[v.v] + (v.r ? " · " + v.r : "")));
    // the module id links to this card alone (the section filtered by it): a link to paste in a ticket
    var self = el("a", { "class": "permalink", href: "#" + key + "/1/" + encodeURIComponent(v.m),
      title: "link to this load" });
    self.appendChild(el("code", { "class": "module" }, v.m));
    h.appendChild(self);
    h.appendChild(el("span", { "class": "status " + (v.f ? "failed" : "ok") },
      v.f ? "load failed" + (v.cause ? ": " + v.cause : "") : "load succeeded"));
    art.appendChild(h);
    var meta = el("div", { "class": "meta" });
    meta.appendChild(document.createTextNode("read " + at(v.rs) + " by " + v.svc + " (" + v.src + ") · trace "));
    meta.appendChild(el("code", {}, v.t));
    meta.appendChild(document.createTextNode(" · load span "));
    meta.appendChild(el("code", {}, v.s));
    meta.appendChild(document.createTextNode(" · decided by " + v.by));
    if (v.ct) {
      meta.appendChild(document.createTextNode(" · matched by " + v.mb + " to creation trace "));
      meta.appendChild(el("code", {}, v.ct));
    }
    if (traceUrl(v)) {
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(link(traceUrl(v), "open the trace"));
    }
    art.appendChild(meta);
    art.appendChild(timeline(v));
    var ul = el("ul", { "class": "evidence" });
    v.c.forEach(function (c) {
      var li = el("li", { "data-stage": c.st });
      li.appendChild(el("span", { "class": "stage" }, c.st + ": " + c.v.replace("_", " ") + " by " + c.by + ". "));
      li.appendChild(document.createTextNode(c.x));
      ul.appendChild(li);
    });
    art.appendChild(ul);
    return art;
  }
  function listItem(p) {
    var td;
    var tr = el("tr", { "data-module": p.m });
    tr.appendChild(el("td", { "class": "mono" }, p.m));
    tr.appendChild(el("td", {}, at(p.at)));
    td = el("td");
    td.appendChild(el("code", {}, p.t));
    if (traceUrl(p)) { td.appendChild(el("br")); td.appendChild(link(traceUrl(p), "open the trace")); }
    tr.appendChild(td);
    return tr;
  }
  var TABLES = {
    failed_loads: {
      head: ["module", "load started", "trace", "cause", "evidence", "service", "duration"],
      row: function (d) {
        var tr = listItem(d);
        var cause = el("td");
        cause.appendChild(el("i", { "class": "swatch cause-" + d.cause }));
        cause.appendChild(document.createTextNode(d.cause + (d.det ? " (" + d.det + ")" : "")));
        cause.appendChild(el("br"));
        cause.appendChild(el("small", {}, d.str + (d.sec.length ? "; also " + d.sec.join(", ") : "")));
        tr.appendChild(cause);
        var ev = el("td", { "class": "evidence" }), ul = el("ul");
        d.ev.forEach(function (line) { ul.appendChild(el("li", {}, line)); });
        (d.db || []).forEach(function (line) { ul.appendChild(el("li", { "class": "database" }, "database: " + line)); });
        d.mis.forEach(function (line) { ul.appendChild(el("li", { "class": "missing" }, "missing: " + line)); });
        ev.appendChild(ul);
        tr.appendChild(ev);
        tr.appendChild(el("td", {}, d.svc));
        tr.appendChild(el("td", {}, d.ms.toFixed(1) + " ms"));
        return tr;
      },
    },
    unmatched: {
      head: ["module", "read started", "trace", "why", "service", "load"],
      row: function (u) {
        var tr = listItem(u);
        tr.appendChild(el("td", {}, u.why));
        tr.appendChild(el("td", {}, u.svc));
        tr.appendChild(el("td", {}, u.f ? "failed" : "ok"));
        return tr;
      },
    },
    failed_commits: {
      head: ["module", "commit ended", "trace", "error", "service"],
      row: function (f) {
        var tr = listItem(f);
        tr.appendChild(el("td", {}, f.err));
        tr.appendChild(el("td", {}, f.svc));
        return tr;
      },
    },
  };

  // -- sections (one shown at a time), pages, filter -------------------------------------------------
  function pagerInto(pager, key, st, pages, from, count, total, needle) {
    pager.textContent = "";
    var prev = el("button", { type: "button", "class": "prev" }, "‹ previous");
    var next = el("button", { type: "button", "class": "next" }, "next ›");
    prev.disabled = st.page <= 1;
    next.disabled = st.page >= pages;
    prev.addEventListener("click", function () { go(key, st.page - 1); });
    next.addEventListener("click", function () { go(key, st.page + 1); });
    pager.appendChild(prev);
    pager.appendChild(el("span", { "class": "where" }, "page " + st.page + " of " + pages + " · " +
      (count ? (from + 1) + "–" + (from + count) : "0") + " of " + total + (needle ? " matching" : "")));
    pager.appendChild(next);
  }
  function render(section) {
    var key = section.getAttribute("data-section");
    var kind = section.classList.contains("timelines") ? "timelines" : "tables";
    var st = state[key];
    var all = items(key);
    var needle = st.filter.toLowerCase();
    var shown = needle ? all.filter(function (p) { return String(p.m).toLowerCase().indexOf(needle) >= 0; }) : all;
    var size = PAGE[kind], pages = Math.max(1, Math.ceil(shown.length / size));
    st.page = Math.min(Math.max(1, st.page), pages);
    var from = (st.page - 1) * size, slice = shown.slice(from, from + size);
    var pagers = section.querySelectorAll(".pager"), box = section.querySelector(".items");
    Array.prototype.forEach.call(pagers, function (pager) {
      pagerInto(pager, key, st, pages, from, slice.length, shown.length, needle);
    });
    box.textContent = "";
    if (kind === "timelines") {
      slice.forEach(function (v) { box.appendChild(card(v, key)); });
    } else {
      var table = el("table", { "class": "list" }), tr = el("tr");
      TABLES[key].head.forEach(function (h) { tr.appendChild(el("th", {}, h)); });
      table.appendChild(el("thead")).appendChild(tr);
      var body = el("tbody");
      slice.forEach(function (p) { body.appendChild(TABLES[key].row(p)); });
      table.appendChild(body);
      box.appendChild(table);
    }
    section.setAttribute("data-page", String(st.page));
    section.setAttribute("data-pages", String(pages));
  }
  var sections = document.querySelectorAll("section[data-section]");
  var tabs = document.querySelectorAll("a[data-tab]");
  function show(key) {
    Array.prototype.forEach.call(sections, function (section) {
      section.hidden = section.getAttribute("data-section") !== key;
    });
    Array.prototype.forEach.call(tabs, function (tab) {
      tab.classList.toggle("active", tab.getAttribute("data-tab") === key);
    });
    document.body.setAttribute("data-shown", key);
  }
  function go(key, page) {
    var filter = state[key].filter;
    location.hash = key + "/" + page + (filter ? "/" + encodeURIComponent(filter) : "");
  }
  function fromHash(scroll) {
    // #section/page, or #section/page/filter: a link to one module's card
    var m = /^#([a-z_]+)\/(\d+)(?:\/(.*))?$/.exec(location.hash);
    if (!m || !document.getElementById(m[1])) return false;
    var section = document.getElementById(m[1]);
    if (state[m[1]]) {
      state[m[1]].page = parseInt(m[2], 10);
      if (m[3] !== undefined) {
        try { state[m[1]].filter = decodeURIComponent(m[3]); } catch (e) { state[m[1]].filter = m[3]; }
        section.querySelector("input.filter").value = state[m[1]].filter;
      }
      render(section);
    }
    show(m[1]);
    // a page turned at the bottom of a long section: back to its top
    if (scroll && section.getBoundingClientRect().top < 0) section.scrollIntoView();
    return true;
  }
  Array.prototype.forEach.call(sections, function (section) {
    if (!section.querySelector(".items")) return;
    var st = state[section.getAttribute("data-section")] = { page: 1, filter: "" };
    // made once, outside the pagers that are redrawn, so typing keeps the focus
    var input = el("input", { type: "search", "class": "filter", placeholder: "filter by module id",
      "aria-label": "filter by module id" });
    input.addEventListener("input", function () { st.filter = input.value; st.page = 1; render(section); });
    section.insertBefore(input, section.querySelector(".pager"));
    render(section);
  });
  window.addEventListener("hashchange", function () { fromHash(true); });
  if (!fromHash(false)) {
    // the first section with something in it (races first), else the races' "None."
    var first = Array.prototype.find.call(tabs, function (tab) { return !tab.hasAttribute("data-empty"); });
    show(first ? first.getAttribute("data-tab") : "races");
  }
  document.body.setAttribute("data-rendered", "true");
})();
