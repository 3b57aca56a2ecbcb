// Sentinela's console: live progress, the timeline and the offline map. No framework, no CDN:
// the API's read operations answer with the session cookie.
"use strict";

function liveProgress(section) {
  const id = section.dataset.searchId;
  const bar = document.getElementById("progress");
  const percent = document.getElementById("percent");
  const frames = document.getElementById("frames");
  const calls = document.getElementById("calls");
  async function poll() {
    try {
      const answer = await fetch(`/api/v1/searches/${id}`, { credentials: "same-origin" });
      if (answer.ok) {
        const s = await answer.json();
        const p = s.progress;
        const done = p.tasks_done + p.tasks_failed;
        const total = Math.max(p.tasks_total, 1);
        const ended = s.status !== "pending" && s.status !== "processing";
        bar.max = total;
        bar.value = ended ? total : done;
        percent.textContent = `${ended ? 100 : Math.floor((done * 100) / total)} %`;
        frames.textContent = p.frames_analyzed;
        calls.textContent = p.detector_calls;
        if (ended) {
          window.location.reload();
          return;
        }
      }
    } catch (e) {
      // The next tick tries again.
    }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 500);
}

function formatTime(iso, timeZone, lang) {
  return new Intl.DateTimeFormat(lang, {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).format(new Date(iso)).replace(",", "");
}

async function trajectory(section) {
  const id = section.dataset.searchId;
  const timeZone = section.dataset.timezone;
  const lang = section.dataset.lang;
  const words = JSON.parse(section.dataset.words);
  const list = document.getElementById("timeline");
  const answer = await fetch(`/api/v1/searches/${id}/trajectory?limit=1`, { credentials: "same-origin" });
  if (!answer.ok) {
    list.textContent = `${answer.status}`;
    return;
  }
  const t = await answer.json();
  list.textContent = "";
  if (!t.visits.length) {
    const li = document.createElement("li");
    li.textContent = words.not_seen;
    list.appendChild(li);
  }
  t.visits.forEach((v, i) => {
    const li = document.createElement("li");
    li.className = "visit";
    li.dataset.camera = v.camera_id;
    li.dataset.first = v.first_seen;
    const link = document.createElement("a");
    link.href = `/console/searches/${id}/sightings/${v.best_sighting_id}`;
    link.textContent = `${formatTime(v.first_seen, timeZone, lang)} – ${formatTime(v.last_seen, timeZone, lang)} · ${v.camera_name} · ${v.sightings} ${words.sightings}`;
    li.appendChild(link);
    const img = document.createElement("img");
    img.src = `/api/v1/searches/${id}/sightings/${v.best_sighting_id}/crop`;
    img.alt = `${words.camera} ${v.camera_name}, ${i + 1}`;
    img.loading = "lazy";
    li.appendChild(img);
    list.appendChild(li);
  });
  drawMap(document.getElementById("map"), t.visits);
}

// Cameras by their coordinates and the path in visit order. With a tile server configured the
// map is Web Mercator over its tiles; without one, a plain canvas (works offline).
function drawMap(canvas, visits) {
  if (!canvas) return;
  const cameras = JSON.parse(canvas.dataset.cameras || "[]");
  const tiles = canvas.dataset.tiles || "";
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 40;
  ctx.fillStyle = "#f7f7f2";
  ctx.fillRect(0, 0, w, h);
  if (!cameras.length) return;
  // World pixel coordinates at zoom z (Web Mercator), or plain degrees.
  const world = (lon, lat, z) => {
    const size = 256 * Math.pow(2, z);
    const s = Math.sin((lat * Math.PI) / 180);
    return [((lon + 180) / 360) * size, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * size];
  };
  let project;
  let zoom = 0, offX = 0, offY = 0;
  if (tiles) {
    const fits = (z) => {
      const pts = cameras.map((c) => world(c.lon, c.lat, z));
      const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
      return Math.max(...xs) - Math.min(...xs) <= w - 2 * pad &&
        Math.max(...ys) - Math.min(...ys) <= h - 2 * pad;
    };
    zoom = 18;
    while (zoom > 1 && !fits(zoom)) zoom--;
    const pts = cameras.map((c) => world(c.lon, c.lat, zoom));
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    offX = (Math.min(...xs) + Math.max(...xs)) / 2 - w / 2;
    offY = (Math.min(...ys) + Math.max(...ys)) / 2 - h / 2;
    project = (c) => { const p = world(c.lon, c.lat, zoom); return [p[0] - offX, p[1] - offY]; };
  } else {
    const lats = cameras.map((c) => c.lat), lons = cameras.map((c) => c.lon);
    const [minLat, maxLat] = [Math.min(...lats), Math.max(...lats)];
    const [minLon, maxLon] = [Math.min(...lons), Math.max(...lons)];
    const spanLat = Math.max(maxLat - minLat, 1e-4), spanLon = Math.max(maxLon - minLon, 1e-4);
    const scale = Math.min((w - 2 * pad) / spanLon, (h - 2 * pad) / spanLat);
    project = (c) => [pad + (c.lon - minLon) * scale, h - pad - (c.lat - minLat) * scale];
  }
  const overlay = () => {
    const at = new Map(cameras.map((c) => [c.id, c]));
    const stops = visits.map((v) => at.get(v.camera_id)).filter(Boolean);
    ctx.strokeStyle = "#c00000";
    ctx.lineWidth = 3;
    let segments = 0;
    for (let i = 1; i < stops.length; i++) {
      const [ax, ay] = project(stops[i - 1]), [bx, by] = project(stops[i]);
      ctx.beginPath();
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
      ctx.stroke();
      // An arrowhead at the segment's middle.
      const mx = (ax + bx) / 2, my = (ay + by) / 2;
      const angle = Math.atan2(by - ay, bx - ax);
      ctx.beginPath();
      ctx.moveTo(mx, my);
      ctx.lineTo(mx - 10 * Math.cos(angle - 0.5), my - 10 * Math.sin(angle - 0.5));
      ctx.lineTo(mx - 10 * Math.cos(angle + 0.5), my - 10 * Math.sin(angle + 0.5));
      ctx.closePath();
      ctx.fillStyle = "#c00000";
      ctx.fill();
      segments++;
    }
    // The cameras, numbered by their first visit.
    ctx.font = "13px sans-serif";
    cameras.forEach((c) => {
      const seen = visits.findIndex((v) => v.camera_id === c.id);
      const [x, y] = project(c);
      ctx.beginPath();
      ctx.arc(x, y, 7, 0, 2 * Math.PI);
      ctx.fillStyle = seen >= 0 ? "#0b5394" : "#999";
      ctx.fill();
      ctx.fillStyle = "#111";
      const label = seen >= 0 ? `${seen + 1}. ${c.name}` : c.name;
      // Labels near the right edge go to the left of their camera.
      const right = x + 10 + ctx.measureText(label).width > w;
      ctx.textAlign = right ? "right" : "left";
      ctx.fillText(label, x + (right ? -10 : 10), y - 8);
    });
    canvas.dataset.drawn = String(segments);
    canvas.dataset.stops = String(stops.length);
  };
  overlay();
  if (!tiles) return;
  // The tiles under the path: drawn as they arrive, the path and cameras redrawn on top.
  let loaded = 0;
  const n = Math.pow(2, zoom);
  for (let tx = Math.floor(offX / 256); tx * 256 < offX + w; tx++) {
    for (let ty = Math.floor(offY / 256); ty * 256 < offY + h; ty++) {
      if (ty < 0 || ty >= n) continue;
      const img = new Image();
      img.onload = () => {
        ctx.drawImage(img, tx * 256 - offX, ty * 256 - offY, 256, 256);
        loaded++;
        canvas.dataset.tilesLoaded = String(loaded);
        overlay();
      };
      img.src = tiles.replace("{z}", zoom).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
    }
  }
}

// The new-search form's estimate: recordings, frames, detector calls and cost, before submitting.
function liveEstimate(form) {
  const out = document.getElementById("estimate");
  let timer = null;
  async function estimate() {
    const body = new URLSearchParams(new FormData(form));
    try {
      const answer = await fetch("/console/searches/estimate", {
        method: "POST", body, credentials: "same-origin",
        headers: { "content-type": "application/x-www-form-urlencoded" },
      });
      if (!answer.ok) return;
      const e = await answer.json();
      out.textContent = e.text;
      out.classList.toggle("error", !e.ok);
    } catch (err) {
      // The estimate is a courtesy: the search itself still checks everything.
    }
  }
  form.addEventListener("change", () => {
    clearTimeout(timer);
    timer = setTimeout(estimate, 300);
  });
  estimate();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("new-search");
  if (form) liveEstimate(form);
  const search = document.getElementById("search");
  if (search && search.dataset.live === "true") liveProgress(search);
  const t = document.getElementById("trajectory");
  if (t) trajectory(t);
});
