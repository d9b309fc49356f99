(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("tinyconv-data").textContent);
  const order = D.backward;
  const posOf = new Map(order.map((id, p) => [id, p]));
  const state = { pos: 0, snap: 0, image: 0 };
  const cache = new Map();
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  };
  const fmtShape = (s) => s == null ? "?" : "(" + s.join(", ") + (s.length === 1 ? "," : "") + ")";
  const fmt = (x) => x == null ? "–" : (x === 0 ? "0" : (Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3
                                       ? x.toExponential(4) : x.toPrecision(5)));
  const nodeName = (n) => n.name ? n.name : n.op;
  const chipName = (n, l) => (n.name && l.name.startsWith(n.name + ".") ? l.name.slice(n.name.length + 1) : leafName(l));
  const leafName = (l) => l.name || (l.kind === "input" ? "input" : l.kind);

  function decode(blob) {
    if (cache.has(blob)) return cache.get(blob);
    const bin = atob(blob.q);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const q = new Int8Array(bytes.buffer);
    cache.set(blob, q);
    return q;
  }
  function colour(v) {  // v in [-1, 1] -> diverging blue / white / red
    const t = Math.min(1, Math.abs(v));
    const c = v < 0 ? [33, 102, 172] : [178, 24, 43];
    return [255 + (c[0] - 255) * t, 255 + (c[1] - 255) * t, 255 + (c[2] - 255) * t];
  }
  function paint(width, height, cells, zoom) {
    // cells(put): calls put(x, y, v) for each pixel to colour; the rest stays light grey (gaps between tiles).
    const cv = el("canvas", { class: "pic" });
    cv.width = width; cv.height = height;
    const ctx = cv.getContext("2d");
    const img = ctx.createImageData(width, height);
    const px = img.data;
    for (let i = 0; i < px.length; i += 4) { px[i] = 234; px[i + 1] = 238; px[i + 2] = 242; px[i + 3] = 255; }
    cells((x, y, v) => {
      const c = colour(v), o = 4 * (y * width + x);
      px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2];
    });
    ctx.putImageData(img, 0, 0);
    cv.style.width = (width * zoom) + "px";  // height follows (the picture may shrink to fit its card)
    return cv;
  }
  function grid(q, base, tiles, h, w, cols, zoom) {
    const rows = Math.ceil(tiles / cols);
    zoom = Math.max(1, Math.min(zoom, Math.floor(360 / (rows * (h + 1)))));
    return paint(cols * (w + 1) - 1, rows * (h + 1) - 1, (put) => {
      for (let t = 0; t < tiles; t++) {
        const ox = (t % cols) * (w + 1), oy = Math.floor(t / cols) * (h + 1);
        for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) put(ox + j, oy + i, q[base + (t * h + i) * w + j] / 127);
      }
    }, zoom);
  }
  function zoomFor(width, target) { return Math.max(1, Math.min(8, Math.floor(target / Math.max(1, width)))); }
  // A picture of an array: 4-D (N, C, H, W) -> image n's channels as a grid; 4-D weights (O, I, kh, kw) -> O rows
  // of I kernels; 3-D -> a grid; 2-D -> a heat map; 1-D -> bars; 0-D -> a number.
  function picture(blob, opts) {
    const box = el("div", { class: "picture" });
    const k = blob.kept, q = decode(blob);
    const scale = el("div", { class: "scale" }, el("span", { text: "−" + fmt(blob.scale) }), el("span", { class: "bar" }),
                     el("span", { text: "+" + fmt(blob.scale) }), el("span", { text: "(0 is white)" }));
    let cv = null;
    if (k.length === 4 && opts.weights) {
      const [O, I, h, w] = k;
      const cols = I, tw = cols * (w + 1);
      cv = grid(q, 0, O * I, h, w, cols, zoomFor(tw, 420));
    } else if (k.length === 4) {
      const [N, C, h, w] = k, n = Math.min(opts.image || 0, N - 1);
      const cols = Math.min(C, Math.ceil(Math.sqrt(C * 1.6)));
      cv = grid(q, n * C * h * w, C, h, w, cols, zoomFor(cols * (w + 1), 420));
    } else if (k.length === 3) {
      const [C, h, w] = k;
      const cols = Math.min(C, Math.ceil(Math.sqrt(C * 1.6)));
      cv = grid(q, 0, C, h, w, cols, zoomFor(cols * (w + 1), 420));
    } else if (k.length === 2) {
      const [r, c] = k;
      const zx = zoomFor(c, 420), zy = Math.max(zx, Math.min(16, Math.floor(120 / r)));
      cv = paint(c, r, (put) => { for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) put(j, i, q[i * c + j] / 127); }, 1);
      cv.style.width = (c * zx) + "px"; cv.style.height = (r * zy) + "px";
    } else if (k.length === 1) {
      const n = k[0], bw = Math.max(1, Math.min(14, Math.floor(420 / n))), H = 60;
      cv = el("canvas", { class: "pic" });
      cv.width = Math.max(1, n * bw); cv.height = H;
      const ctx = cv.getContext("2d");
      ctx.fillStyle = "#f6f8fa"; ctx.fillRect(0, 0, cv.width, H);
      ctx.fillStyle = "#8c959f"; ctx.fillRect(0, H / 2, cv.width, 1);
      for (let i = 0; i < n; i++) {
        const v = q[i] / 127, c = colour(v >= 0 ? 1 : -1), hh = Math.round(Math.abs(v) * (H / 2 - 2));
        ctx.fillStyle = "rgb(" + c.map(Math.round).join(",") + ")";
        if (v >= 0) ctx.fillRect(i * bw, H / 2 - hh, Math.max(1, bw - 1), hh);
        else ctx.fillRect(i * bw, H / 2 + 1, Math.max(1, bw - 1), hh);
      }
    } else {
      box.append(el("div", { class: "note", text: "a scalar: " + fmt(q[0] / 127 * blob.scale) }));
      return box;
    }
    box.append(scale, cv);
    if (k.length === 4 && !opts.weights) {
      box.append(el("div", { class: "note", text: "image " + (Math.min(opts.image || 0, k[0] - 1) + 1) + " of " +
        (blob.shape[0] > k[0] ? k[0] + " embedded (of " + blob.shape[0] + ")" : k[0]) + ": " + k[1] + " channels of " + k[2] + "×" + k[3] }));
    } else if (k.length === 4) {
      box.append(el("div", { class: "note", text: k[0] + " rows (output channels) × " + k[1] + " columns (input channels) of " + k[2] + "×" + k[3] + " kernels" }));
    } else if (blob.shape.length && blob.shape[0] > k[0]) {
      box.append(el("div", { class: "note", text: "first " + k[0] + " of " + blob.shape[0] + " rows" }));
    }
    return box;
  }
  function statsTable(stats, of) {
    const t = el("table", { class: "stats", "data-of": of });
    const head = el("tr"), body = el("tr");
    for (const key of ["min", "max", "mean", "norm"]) {
      head.append(el("th", { text: key }));
      body.append(el("td", { "data-stat": key, text: fmt(stats[key]) }));
    }
    if (stats.nonfinite) { head.append(el("th", { text: "non-finite" })); body.append(el("td", { text: String(stats.nonfinite) })); }
    t.append(head, body);
    return t;
  }

  // ---------------------------------------------------------------------------------------------- graph
  const graph = $("#graph");
  const boxes = new Map();
  const inputLeaves = D.leaves.filter((l) => !l.requires_grad && l.shape.length >= 2);
  const leafBoxes = new Map();
  for (const l of inputLeaves) {
    const b = el("div", { class: "node leafbox", "data-leaf": String(l.id) },
      el("div", { class: "head" }, el("span", { class: "nm", text: leafName(l) }), el("span", { class: "badge", text: "data" })),
      el("div", { class: "shp", text: fmtShape(l.shape) + " " + l.dtype }));
    graph.append(b); leafBoxes.set(l.id, b);
  }
  for (const id of D.forward) {
    const n = D.nodes[id];
    const p = posOf.has(id) ? posOf.get(id) : null;
    const chips = el("div", { class: "chips" });
    for (const inp of n.inputs) if (inp.leaf != null && D.leaves[inp.leaf].requires_grad)
      chips.append(el("span", { class: "chip", title: leafName(D.leaves[inp.leaf]),
                                text: chipName(n, D.leaves[inp.leaf]) + " " + fmtShape(D.leaves[inp.leaf].shape) }));
    const shortOp = n.op === "Conv2dReluMaxPool2d" ? "Conv2d+ReLU+MaxPool2d (fused)" : n.op;
    const b = el("div", { class: "node" + (p == null ? " nograd" : ""), "data-node": String(id), title: n.label },
      el("div", { class: "head" }, el("span", { class: "nm" }, n.name ? n.name + " " : "",
                                       el("span", { class: "op", text: n.name ? "· " + shortOp : shortOp })),
         el("span", { class: "badge", text: p == null ? "no grad" : "↑" + (p + 1) })),
      el("div", { class: "shp", text: "→ " + fmtShape(n.shape) }));
    if (n.stages) for (const s of n.stages.slice().reverse())
      b.append(el("div", { class: "stage", text: "· " + s.label.replace(/Backward(\(.*\))?$/, "") + " → " + fmtShape(s.shape) }));
    if (chips.childNodes.length) b.append(chips);
    b.addEventListener("click", () => { if (p != null) go(p); });
    graph.append(b); boxes.set(id, b);
  }
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.id = "edges";
  graph.prepend(svg);
  function drawEdges() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const r0 = graph.getBoundingClientRect();
    const g0 = { left: r0.left - graph.scrollLeft, top: r0.top - graph.scrollTop, width: r0.width };
    svg.setAttribute("width", g0.width); svg.setAttribute("height", graph.scrollHeight);
    const seq = [...leafBoxes.values(), ...D.forward.map((id) => boxes.get(id))];
    const next = new Map(seq.map((b, i) => [b, seq[i + 1]]));
    let lane = 0;
    for (const id of D.forward) {
      const to = boxes.get(id);
      for (const inp of D.nodes[id].inputs) {
        const from = inp.node != null ? boxes.get(inp.node) : leafBoxes.get(inp.leaf);
        if (!from) continue;
        const a = from.getBoundingClientRect(), b = to.getBoundingClientRect();
        const path = document.createElementNS(svgNS, "path");
        let d;
        if (next.get(from) === to) {
          const x = a.left - g0.left + 22;
          d = `M ${x} ${a.bottom - g0.top} L ${x} ${b.top - g0.top}`;
        } else {  // a skip: an arc in the left margin (fan-out and residual joins)
          const off = 10 + 8 * (lane++ % 4);
          const y1 = (a.top + a.bottom) / 2 - g0.top, y2 = (b.top + b.bottom) / 2 - g0.top, x0 = a.left - g0.left;
          d = `M ${x0} ${y1} C ${x0 - off - 14} ${y1}, ${x0 - off - 14} ${y2}, ${x0} ${y2}`;
        }
        path.setAttribute("d", d);
        path.setAttribute("fill", "none");
        path.setAttribute("stroke", "#8c959f");
        path.setAttribute("stroke-width", "1.3");
        path.setAttribute("marker-end", "url(#arrow)");
        svg.append(path);
      }
    }
    const defs = document.createElementNS(svgNS, "defs");
    defs.innerHTML = '<marker id="arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="6" markerHeight="6" orient="auto">' +
                     '<path d="M0,0 L6,3 L0,6 z" fill="#8c959f"/></marker>';
    svg.prepend(defs);
  }

  // ---------------------------------------------------------------------------------------------- detail
  const detail = $("#detail");
  function leafCard(l, ld, snap) {
    const card = el("div", { class: "card", "data-leaf": String(l.id) });
    card.append(el("h3", { text: "∂L/∂" + leafName(l) + "  " + fmtShape(l.shape) }));
    if (!ld || !ld.grad) { card.append(el("div", { class: "note", text: "no gradient" })); return card; }
    card.append(statsTable(ld.grad_stats, "leaf-" + l.id));
    card.append(picture(ld.grad, { weights: l.shape.length === 4, image: 0 }));
    if (ld.check) {
      const t = el("table", { class: "list check", "data-leaf": String(l.id) });
      t.append(el("tr", {}, ...["element", "analytic", "numeric (float64)", "relative error", ""].map((h) => el("th", { text: h }))));
      for (const r of ld.check) {
        t.append(el("tr", { class: r.ok ? "ok" : "bad", "data-ok": String(r.ok) },
          el("td", { text: "[" + r.index.join(", ") + "]" }), el("td", { text: fmt(r.analytic) }),
          el("td", { text: fmt(r.numeric) }), el("td", { text: r.rel_error == null ? "–" : r.rel_error.toExponential(1) }),
          el("td", { class: "verdict", text: r.ok ? "ok" : "wrong" })));
      }
      card.append(el("div", { class: "note", text: "numerical check: central differences (L(p+ε) − L(p−ε)) / 2ε in float64, ε = " + snap.eps.toExponential(0) +
                               "; green when the relative error is at most 1e-2" }), t);
    } else if (!snap.checked) {
      card.append(el("div", { class: "note", text: "no numerical check: pass closure= (a function that recomputes the loss) to tc.explore" }));
    }
    return card;
  }
  function render() {
    const snap = D.snapshots[state.snap];
    const id = order[state.pos];
    const n = D.nodes[id], nd = snap.nodes[id];
    for (const [bid, b] of boxes) {
      const p = posOf.get(bid);
      b.classList.toggle("current", bid === id);
      b.classList.toggle("done", p != null && p < state.pos);
      b.classList.toggle("target", n.inputs.some((x) => x.node === bid));
    }
    const cur = boxes.get(id);
    if (cur && cur.scrollIntoView) {
      const r = cur.getBoundingClientRect();
      if (r.top < 60 || r.bottom > window.innerHeight) cur.scrollIntoView({ block: "center" });
    }
    $("#position").textContent = "node " + (state.pos + 1) + " of " + order.length;
    $("#prev").disabled = state.pos === 0;
    $("#next").disabled = state.pos === order.length - 1;
    $("#loss").textContent = "loss " + fmt(snap.loss);
    detail.textContent = "";
    const title = el("h2", { "data-field": "node-id", "data-node": String(id) },
                     (n.name ? n.name + " · " : "") + n.label);
    detail.append(title,
      el("div", { class: "muted" }, "backward step " + (state.pos + 1) + " of " + order.length + " · output ",
         el("span", { "data-field": "shape", text: fmtShape(n.shape) }), " " + n.dtype));
    const rule = el("div", { class: "card rule" }, el("h3", { text: "local backward rule" }));
    if (n.stages) {
      const chain = n.stages.slice().reverse().map((s) => s.label.replace(/Backward(\(.*\))?$/, "") + " " + fmtShape(s.shape));
      rule.append(el("p", { class: "chain", "data-field": "stages", text: chain.join("  →  ") }));
    }
    rule.append(el("p", { text: n.rule.words }), el("pre", { class: "formula", text: n.rule.formula }));
    detail.append(rule);
    const row = el("div", { class: "row" });
    for (const inp of n.inputs) {  // the data this node reads (the images, for a first layer)
      const ld = inp.leaf != null ? snap.leaves[inp.leaf] : null;
      if (ld && ld.value) {
        const l = D.leaves[inp.leaf];
        row.append(el("div", { class: "card", "data-input": String(l.id) }, el("h3", { text: leafName(l) + "  " + fmtShape(l.shape) }),
                      picture(ld.value, { image: state.image })));
      }
    }
    const out = el("div", { class: "card" }, el("h3", { text: "forward output  " + fmtShape(n.shape) }));
    if (nd.value) { out.append(statsTable(nd.value_stats, "value"), picture(nd.value, { image: state.image })); }
    else out.append(el("div", { class: "note", text: "not kept" }));
    const gin = el("div", { class: "card" }, el("h3", { text: "gradient arriving  ∂L/∂output" }));
    if (nd.grad) {
      gin.append(statsTable(nd.grad_stats, "grad"), picture(nd.grad, { image: state.image }));
      const consumers = D.forward.filter((j) => D.nodes[j].inputs.some((x) => x.node === id));
      if (consumers.length > 1) gin.append(el("div", { class: "note", text: "the sum of the gradients from its " + consumers.length +
        " consumers: " + consumers.map((j) => nodeName(D.nodes[j]) + " (backward " + (posOf.get(j) + 1) + ")").join(", ") }));
    } else gin.append(el("div", { class: "note", text: "no gradient reached this node" }));
    row.append(out, gin);
    detail.append(row);
    const sends = el("div", { class: "card" }, el("h3", { text: "gradients sent to the inputs" }));
    const t = el("table", { class: "list sends" });
    t.append(el("tr", {}, ...["to", "shape", "min", "max", "mean", "norm"].map((h) => el("th", { text: h }))));
    n.inputs.forEach((inp, k) => {
      const s = nd.sends ? nd.sends[k] : null;
      let who;
      if (inp.node != null) {
        const m = D.nodes[inp.node];
        who = el("a", { class: "jump", text: nodeName(m) + " (" + m.op + ", backward " + (posOf.has(inp.node) ? posOf.get(inp.node) + 1 : "–") + ")" });
        who.addEventListener("click", () => { if (posOf.has(inp.node)) go(posOf.get(inp.node)); });
      } else who = document.createTextNode(leafName(D.leaves[inp.leaf]) + " (" + D.leaves[inp.leaf].kind + ")");
      const tr = el("tr", { "data-send": String(k) }, el("td", {}, who));
      if (s) {
        tr.append(el("td", { text: fmtShape(s.shape) }));
        for (const key of ["min", "max", "mean", "norm"]) tr.append(el("td", { "data-stat": key, text: fmt(s.stats[key]) }));
      } else tr.append(el("td", { colspan: "5", class: "muted", text: "none (needs no gradient)" }));
      t.append(tr);
    });
    sends.append(t);
    detail.append(sends);
    const params = n.inputs.filter((x) => x.leaf != null && D.leaves[x.leaf].requires_grad);
    if (params.length) {
      detail.append(el("h3", { text: "parameter gradients (after the whole pass)" }));
      const prow = el("div", { class: "row" });
      for (const x of params) prow.append(leafCard(D.leaves[x.leaf], snap.leaves[x.leaf], snap));
      detail.append(prow);
    }
  }
  function go(p) {
    state.pos = Math.max(0, Math.min(order.length - 1, p));
    render();
    return order[state.pos];
  }

  // ---------------------------------------------------------------------------------------------- controls
  $("#title").textContent = D.title;
  $("header h1").title = "backward pass of " + D.title;
  document.title = "tinyconv · backward pass of " + D.title;
  $("#prev").addEventListener("click", () => go(state.pos - 1));
  $("#next").addEventListener("click", () => go(state.pos + 1));
  document.addEventListener("keydown", (e) => {
    if (e.target && e.target.tagName === "INPUT" && e.target.type === "range") return;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") { go(state.pos + 1); e.preventDefault(); }
    if (e.key === "ArrowLeft" || e.key === "ArrowUp") { go(state.pos - 1); e.preventDefault(); }
  });
  const slider = $("#snapshot");
  slider.max = String(D.snapshots.length - 1);
  if (D.snapshots.length < 2) $("#snap-box").style.display = "none";
  function setSnap(i) {
    state.snap = Math.max(0, Math.min(D.snapshots.length - 1, i));
    slider.value = String(state.snap);
    $("#snap-label").textContent = D.snapshots[state.snap].label;
    render();
    return state.snap;
  }
  slider.addEventListener("input", () => setSnap(Number(slider.value)));
  const imageSel = $("#image");
  let batch = 0;
  for (const s of D.snapshots[0].nodes) if (s.value && s.value.kept.length === 4) { batch = Math.max(batch, s.value.kept[0]); }
  for (let i = 0; i < batch; i++) imageSel.append(el("option", { value: String(i), text: String(i + 1) }));
  if (batch < 2) $("#image-box").style.display = "none";
  imageSel.addEventListener("change", () => { state.image = Number(imageSel.value); render(); });

  window.tinyconvExplorer = {
    data: D,
    step: (k) => go(state.pos + (k == null ? 1 : k)),
    current: () => order[state.pos],
    position: () => state.pos,
    go: (p) => go(p),
    snapshot: (i) => (i == null ? state.snap : setSnap(i)),
    image: (i) => { state.image = i; imageSel.value = String(i); render(); return i; },
  };
  setSnap(0);
  drawEdges();
  window.addEventListener("resize", drawEdges);
  document.body.setAttribute("data-ready-ms", performance.now().toFixed(1));  // drawn: for tests and curious people
  document.body.setAttribute("data-ready", "1");
})();
