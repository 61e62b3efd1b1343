/* featgraph family explorer: the page's own script (data: the JSON in #fg-data, format featgraph-explorer/1,
   see featgraph/explorer/data.py). One splitting tree (or one novel feature) is drawn at a time, so the page stays
   responsive however many features the ladder has. The selection lives in the URL fragment:
     #tree=116              splitting tree 116 (the "tree" column of features.parquet)
     #family=l3-576:24      family 24 of the pair whose smaller SAE is l3-576, drawn inside its tree
     #feature=l3-1152:907   a feature: its tree, or (novel, in no tree) itself beside its nearest smaller feature
     #search=monday&kind=split&min=3&maxcos=0.8   fills the list's controls (cos: a family's lowest edge cos,
                            a novel feature's max cos); with no selection the first match is opened
   Text from the data is only ever set through textContent (tokens may hold "<", quotes, anything). */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("fg-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var S = D.saes, NS = S.length, sIndex = {};
  S.forEach(function (s, i) { sIndex[s.name] = i; });
  var KINDS = {"split": "k-split", "merge": "k-merge", "n:m": "k-nm", "copy": "k-copy", "novel": "k-novel"};

  // -- indexes built once: tree -> members, tree -> edges, the list entries -------------------------------------
  var treeNodes = {}, treeEdges = {};
  S.forEach(function (s, si) {
    D.features[si].tree.forEach(function (t, f) {
      if (t !== null) { (treeNodes[t] = treeNodes[t] || []).push([si, f]); }
    });
  });
  D.edges.forEach(function (flat, p) {
    for (var i = 0; i < flat.length; i += 3) {
      var t = D.features[p].tree[flat[i]];
      (treeEdges[t] = treeEdges[t] || []).push([p, flat[i], flat[i + 1], flat[i + 2]]);
    }
  });
  function fid(si, f) { return S[si].name + ":" + f; }
  function label(si, f) { return D.features[si].label[f] || ""; }
  function words(si, f) { return fid(si, f) + " " + label(si, f) + " " + D.features[si].top[f].join(" "); }

  var entries = [], famByKey = {};
  D.families.forEach(function (r) {
    var p = r[0], key = S[p].name + ":" + r[1], text = [key, r[2]];
    r[3].forEach(function (f) { text.push(words(p, f)); });
    r[4].forEach(function (f) { text.push(words(p + 1, f)); });
    var e = {type: "family", key: key, kind: r[2], size: r[3].length + r[4].length, cos: r[5], row: r,
             title: S[p].name + ":{" + r[3].join(",") + "} \u2192 " + S[p + 1].name + ":{" + r[4].join(",") + "}",
             lab: r[3].map(function (f) { return label(p, f); }).join(" / ") + " \u2192 " +
                  r[4].map(function (f) { return label(p + 1, f); }).join(" / "),
             text: text.join(" ").toLowerCase()};
    famByKey[key] = e; entries.push(e);
  });
  S.forEach(function (s, si) {
    D.features[si].novel.forEach(function (nv, f) {
      if (nv !== 1) { return; }
      entries.push({type: "feature", key: fid(si, f), kind: "novel", size: 1, cos: D.features[si].max_cos[f],
                    title: fid(si, f), lab: label(si, f), text: ("novel " + words(si, f)).toLowerCase()});
    });
  });

  // -- the list ---------------------------------------------------------------------------------------------------
  var MAX_SHOWN = 300, current = null;
  function matches() {
    var q = $("search").value.toLowerCase().split(/\s+/).filter(Boolean), kind = $("kind").value;
    var min = parseInt($("minsize").value, 10) || 1, sort = $("sort").value, maxcos = parseFloat($("maxcos").value);
    var out = entries.filter(function (e) {
      return (!kind || e.kind === kind) && e.size >= min && !(e.cos !== null && e.cos > maxcos) &&
        q.every(function (w) { return e.text.indexOf(w) >= 0; });
    });
    var by = {
      size: function (a, b) { return b.size - a.size || (a.cos || 0) - (b.cos || 0); },
      cos: function (a, b) { return (a.cos === null ? 2 : a.cos) - (b.cos === null ? 2 : b.cos); },
      id: function () { return 0; }
    }[sort];
    return out.map(function (e, i) { return [e, i]; })
      .sort(function (a, b) { return by(a[0], b[0]) || a[1] - b[1]; }).map(function (x) { return x[0]; });
  }
  function renderList() {
    var m = matches(), ol = $("list");
    ol.textContent = "";
    m.slice(0, MAX_SHOWN).forEach(function (e) {
      var li = document.createElement("li"), a = document.createElement("a"), k = document.createElement("span");
      li.className = "entry"; li.dataset.key = e.type + "=" + e.key;
      if (current === li.dataset.key) { li.className += " sel"; }
      a.href = "#" + e.type + "=" + encodeURIComponent(e.key);
      k.className = "k " + KINDS[e.kind]; k.textContent = e.kind;
      a.appendChild(k);
      a.appendChild(document.createTextNode(e.title + (e.cos !== null ? "  cos " + e.cos : "")));
      var lab = document.createElement("div"); lab.className = "lab"; lab.textContent = e.lab;
      a.appendChild(lab); li.appendChild(a); ol.appendChild(li);
    });
    $("count").textContent = m.length + " of " + entries.length + " match" +
      (m.length > MAX_SHOWN ? " (first " + MAX_SHOWN + " shown; refine the search)" : "");
    return m;
  }

  // -- the graph (Cytoscape + dagre: ranks = widths, since every edge joins adjacent widths) ---------------------
  var cy = cytoscape({
    container: $("graph"), wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4,
    style: [
      {selector: "node", style: {"label": "data(text)", "text-wrap": "wrap", "text-max-width": 130, "font-size": 9,
        "text-valign": "bottom", "text-margin-y": 3, "width": 18, "height": 18, "background-color": "data(color)",
        "border-width": 1, "border-color": "#555"}},
      {selector: "node.fam", style: {"border-width": 4, "border-color": "#d9480f"}},
      {selector: "node.ctxonly", style: {"opacity": 0.6, "shape": "round-rectangle"}},
      {selector: "node:selected", style: {"background-color": "#ffa94d"}},
      {selector: "edge", style: {"width": "data(w)", "line-color": "#adb5bd", "curve-style": "bezier",
        "target-arrow-shape": "triangle", "target-arrow-color": "#adb5bd", "arrow-scale": 0.6,
        "label": "data(cos)", "font-size": 7, "color": "#888", "text-rotation": "autorotate"}},
      {selector: "edge.fam", style: {"line-color": "#ff8787", "target-arrow-color": "#ff8787"}},
      {selector: "edge.nearest", style: {"line-style": "dashed", "width": 1}}
    ]
  });
  var ROW_COLORS = ["#4dabf7", "#69db7c", "#ffd43b", "#f783ac", "#b197fc", "#63e6be", "#ffa8a8", "#a9e34b"];
  function nodeEl(si, f, cls) {
    var l = label(si, f);
    return {group: "nodes", classes: cls || "", data: {id: fid(si, f), si: si, f: f,
      text: fid(si, f) + (l ? "\n" + (l.length > 40 ? l.slice(0, 39) + "\u2026" : l) : ""),
      color: ROW_COLORS[si % ROW_COLORS.length]}};
  }
  function edgeEl(p, a, b, c, cls) {
    var tau = D.tau || 0, w = 1 + 7 * Math.max(0, (c - tau) / Math.max(1e-9, 1 - tau));
    return {group: "edges", classes: cls || "", data: {id: fid(p, a) + ">" + fid(p + 1, b), source: fid(p, a),
      target: fid(p + 1, b), cos: c === null ? "" : String(c), w: w}};
  }
  function draw(els, heading) {
    cy.elements().remove();
    cy.add(els);
    cy.layout({name: "dagre", rankDir: "TB", nodeSep: 12, rankSep: 60, nodeDimensionsIncludeLabels: true,
               animate: false, fit: true, padding: 20}).run();
    if (cy.zoom() > 1.4) { cy.zoom(1.4); cy.center(); }  // a 2-node tree should not fill the screen
    $("sel").textContent = heading;
    var rows = {};
    cy.nodes().forEach(function (n) { rows[n.data("si")] = 1; });
    $("rows").textContent = "rows, top to bottom: " + Object.keys(rows).map(Number).sort(function (a, b) {
      return a - b; }).map(function (i) { return S[i].name + " (" + S[i].width + ")"; }).join(" \u2192 ");
    renderCards();
  }
  function selectTree(t, famRow, focus) {
    var members = treeNodes[t] || [], inFam = {};
    if (famRow) {
      famRow[3].forEach(function (f) { inFam[fid(famRow[0], f)] = 1; });
      famRow[4].forEach(function (f) { inFam[fid(famRow[0] + 1, f)] = 1; });
    }
    var els = members.map(function (m) { return nodeEl(m[0], m[1], inFam[fid(m[0], m[1])] ? "fam" : ""); });
    (treeEdges[t] || []).forEach(function (e) {
      var both = inFam[fid(e[0], e[1])] && inFam[fid(e[0] + 1, e[2])];
      els.push(edgeEl(e[0], e[1], e[2], e[3], both ? "fam" : ""));
    });
    draw(els, "splitting tree " + t + ": " + members.length + " features" +
         (famRow ? ", family " + S[famRow[0]].name + ":" + famRow[1] + " (" + famRow[2] + ") outlined" : ""));
    if (focus) { highlight(focus); }
  }
  function selectFeature(si, f) {
    var t = D.features[si].tree[f];
    if (t !== null && t !== undefined) { return selectTree(t, null, fid(si, f)); }
    var els = [nodeEl(si, f, "fam")], par = D.features[si].parent[f];
    if (si > 0 && par !== null) {
      els.unshift(nodeEl(si - 1, par, "ctxonly"));
      els.push(edgeEl(si - 1, par, f, D.features[si].max_cos[f], "nearest"));
    }
    draw(els, fid(si, f) + (D.features[si].novel[f] === 1 ? ": novel (max cos " + D.features[si].max_cos[f] +
         " to its nearest " + S[si - 1].name + " feature, dashed)" : ": in no splitting tree"));
    highlight(fid(si, f));
  }

  // -- contexts beside the graph ------------------------------------------------------------------------------
  function ctxLine(ex) {
    var div = document.createElement("div"), acts = ex[4];
    div.className = "ctx";
    ex[3].forEach(function (v, i) {
      var s = document.createElement("span"), a = +acts.charAt(i);
      s.className = "tok" + (i === ex[2] ? " max" : "");
      s.textContent = D.vocab[v].replace(/\n/g, "\u21b5");
      if (a > 0) { s.style.backgroundColor = "rgba(255,140,0," + (a / 9).toFixed(2) + ")"; }
      s.title = "activation " + (a / 9 * ex[0]).toPrecision(2) + " (of max " + ex[0] + ")";
      div.appendChild(s);
    });
    var m = document.createElement("span"); m.className = "a"; m.textContent = "  max " + ex[0] + ", context " + ex[1];
    div.appendChild(m);
    return div;
  }
  function renderCards() {
    var box = $("contexts");
    box.textContent = "";
    var nodes = cy.nodes().toArray().sort(function (a, b) {
      return a.data("si") - b.data("si") || a.position("x") - b.position("x"); });
    nodes.forEach(function (n) {
      var si = n.data("si"), f = n.data("f"), F = D.features[si], card = document.createElement("div");
      card.className = "card"; card.id = "card-" + n.id(); card.dataset.node = n.id();
      card.dataset.x = n.position("x").toFixed(1); card.dataset.y = n.position("y").toFixed(1);
      var h = document.createElement("h3"); h.textContent = n.id() + (F.label[f] ? "  " + F.label[f] : "");
      var meta = document.createElement("div"); meta.className = "meta";
      meta.textContent = (F.freq[f] !== null ? "fires on " + (100 * F.freq[f]).toPrecision(3) + "% of tokens" : "no stats") +
        (F.max_cos[f] !== null ? "; max cos " + F.max_cos[f] + " to " + S[si - 1].name + ":" + F.parent[f] : "") +
        (F.novel[f] === 1 ? " (novel)" : "") + (F.top[f].length ? "; top tokens: " + F.top[f].join(" \u00b7 ") : "");
      card.appendChild(h); card.appendChild(meta);
      var exs = (D.examples[si] || {})[String(f)] || [];
      if (!exs.length) { var none = document.createElement("div"); none.className = "none";
        none.textContent = "no contexts (never active in the examples)"; card.appendChild(none); }
      exs.forEach(function (ex) { card.appendChild(ctxLine(ex)); });
      card.addEventListener("click", function () { highlight(n.id()); });
      box.appendChild(card);
    });
  }
  function highlight(id) {
    cy.nodes().unselect();
    var n = cy.getElementById(id);
    if (n.length) { n.select(); }
    Array.prototype.forEach.call(document.querySelectorAll(".card.hl"), function (c) { c.classList.remove("hl"); });
    var card = document.getElementById("card-" + id);
    if (card) { card.classList.add("hl"); card.scrollIntoView({block: "nearest"}); }
  }
  cy.on("tap", "node", function (evt) { highlight(evt.target.id()); });

  // -- the URL fragment drives everything (links in the list only change it) ------------------------------------
  function parseFeature(v) {
    var i = v.lastIndexOf(":"), si = sIndex[v.slice(0, i)], f = parseInt(v.slice(i + 1), 10);
    if (si === undefined || !(f >= 0 && f < S[si].width)) { throw new Error("no feature " + v); }
    return [si, f];
  }
  function route() {
    var q = new URLSearchParams(location.hash.slice(1)), sel = null;
    if (q.has("search")) { $("search").value = q.get("search"); }
    if (q.has("kind")) { $("kind").value = q.get("kind"); }
    if (q.has("min")) { $("minsize").value = q.get("min"); }
    if (q.has("maxcos")) { $("maxcos").value = q.get("maxcos"); }
    if (q.has("tree")) { sel = "tree=" + q.get("tree"); }
    else if (q.has("family")) { sel = "family=" + q.get("family"); }
    else if (q.has("feature")) { sel = "feature=" + q.get("feature"); }
    current = sel;
    var m = renderList();
    if (!sel && m.length && (q.has("search") || q.has("kind") || q.has("min") || q.has("maxcos"))) { sel = m[0].type + "=" + m[0].key; current = sel; renderList(); }
    if (!sel) { return; }
    var shown = document.querySelector("#list li.sel");
    if (shown) { shown.scrollIntoView({block: "nearest"}); }
    var k = sel.slice(0, sel.indexOf("=")), v = sel.slice(sel.indexOf("=") + 1);
    var msg = $("msg");
    try {
      if (k === "tree") {
        if (!treeNodes[v]) { throw new Error("no splitting tree " + v); }
        selectTree(+v, null, null);
      } else if (k === "family") {
        var e = famByKey[v];
        if (!e) { throw new Error("no family " + v); }
        selectTree(D.features[e.row[0]].tree[e.row[3][0]], e.row, null);
      } else {
        var sf = parseFeature(v); selectFeature(sf[0], sf[1]);
      }
      document.body.dataset.selected = sel;
      msg.textContent = "";
    } catch (err) {
      msg.textContent = err.message; document.body.dataset.selected = "";
    }
  }
  ["search", "kind", "minsize", "maxcos", "sort"].forEach(function (id) { $(id).addEventListener("input", renderList); });
  window.addEventListener("hashchange", route);
  $("status").textContent = entries.length + " families and novel features, " + NS + " SAEs";
  route();
  document.body.dataset.ready = "1";
})();
