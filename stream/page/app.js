// The llmcodec browser client: microphone (AudioWorklet) or a local file -> /v1/stream -> live LLM tokens.
// Protocol: docs/PROTOCOL.md; its constants come from the server (/protocol.json, built from stream/protocol.py).
// No build step. Tests read window.llmcodecPage; with ?record in the URL it also keeps every sample sent.

const $ = (id) => document.getElementById(id);
const PARAMS = new URLSearchParams(location.search);
const RECORD = PARAMS.has("record");
// one binary frame per 20 ms of audio; ?frame_ms=100 sends fewer, larger frames (10..500 ms), as a
// server behind a relaying proxy (Ray Serve) prefers
const SEND_SECONDS = Math.min(500, Math.max(10, Number(PARAMS.get("frame_ms")) || 20)) / 1000;
const MAX_SHOWN = { words: 48, pieces: 16 };

const page = {
  protocol: null, status: "loading", streams: 0, message: null,
  stream: null, source: null, // the current Stream and audio source
};
window.llmcodecPage = page;

// ---- messages on the page ------------------------------------------------------------------
function showMessage(kind, text, { error = true, reconnect = false } = {}) {
  const box = $("message");
  box.hidden = false;
  box.className = "message" + (error ? " error" : "");
  box.dataset.kind = kind;
  box.textContent = text;
  $("reconnect").hidden = !reconnect;
  page.message = { kind, text };
}

function clearMessage() {
  $("message").hidden = true;
  $("message").dataset.kind = "";
  $("reconnect").hidden = true;
  page.message = null;
}

function setStatus(status, text) {
  page.status = status;
  $("status").textContent = text;
  $("status").className = "status" + (status === "streaming" ? " live" : "");
}

const TLS_HINT = "llmcodec serve --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem, then open https://HOST:PORT/";

function micErrorMessage(e) {
  const name = e && e.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return ["permission", "Microphone permission was denied. Allow the microphone for this site " +
      "(the icon at the left of the address bar), then press Start microphone again; or stream a file instead."];
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return ["no_device", "No microphone was found: this computer has no audio input device. " +
      "Connect one and press Start microphone again, or stream a file instead."];
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return ["device_busy", "The microphone could not be opened: another program may be using it (" +
      (e.message || name) + ")."];
  }
  return ["mic", "The microphone could not be started: " + (e && (e.message || name) || e)];
}

// Browsers hide why a WebSocket handshake failed; ask the same URL over fetch, which sees the HTTP answer.
async function diagnoseRefusal(token) {
  let r;
  try {
    r = await fetch(page.protocol.stream_path, { cache: "no-store",
      headers: token ? { Authorization: "Bearer " + token } : {} });
  } catch (e) {
    return ["unreachable", `The server at ${location.host} cannot be reached (${e.message}). Is llmcodec serve running?`];
  }
  const body = (await r.text()).trim();
  if (r.status === 401) {
    return ["unauthorized", `This server needs an access token (HTTP 401). Enter it in the Token field and start ` +
      `again. The server said: ${body}`];
  }
  if (r.status === 403) {
    return ["forbidden", `The server refused the connection (HTTP 403): ${body}. Check the token.`];
  }
  if (r.status === 503) {
    return ["full", `The server is full or shutting down (HTTP 503): ${body}. Try again in a few seconds.`];
  }
  return ["handshake", `The WebSocket connection failed, though the server answers HTTP ${r.status} ` +
    `(${body}). A proxy between you and the server may block WebSockets.`];
}

// ---- statistics ---------------------------------------------------------------------------
function percentile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summary(values) {
  const s = Float64Array.from(values).sort();
  return { n: s.length, p50: percentile(s, 0.5), p99: percentile(s, 0.99) };
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// ---- one stream: a WebSocket session of /v1/stream --------------------------------------------
class Stream {
  constructor(rate, { token, playback, kind }) {
    this.rate = rate; this.token = token; this.playback = playback; this.kind = kind;
    this.ready = null; this.opened = false; this.ended = false; this.failed = false; this.stopping = false;
    this.pending = []; // audio captured before the socket opened
    this.frames = []; // {end: cumulative samples, t: send time} of frames not yet matched to a block
    this.samplesSent = 0; this.blocks = 0; this.endBlocks = null;
    this.codes = [[], [], []]; this.levels = [[], [], []]; this.text = [[], [], []];
    this.serverMs = []; this.wireMs = []; this.arrivals = [];
    this.audioBlocks = 0; this.awaitingAudio = false;
    this.sent = RECORD ? [] : null; this.decoded = RECORD ? [] : null;
    this.playCtx = null; this.playAt = 0;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${page.protocol.stream_path}`;
    const protocols = [page.protocol.subprotocol];
    if (token) protocols.push(page.protocol.token_subprotocol_prefix + base64url(token));
    if (playback) {
      this.playCtx = new AudioContext();
    }
    this.ws = new WebSocket(this.url, protocols);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.onOpen();
    this.ws.onmessage = (ev) => this.onMessage(ev);
    this.ws.onclose = (ev) => this.onClose(ev);
    page.streams += 1;
  }

  onOpen() {
    this.opened = true;
    const returns = ["tokens", "text"].concat(this.playback ? ["audio"] : []);
    this.ws.send(JSON.stringify({ type: "start", sample_rate: this.rate, format: "pcm_f32le", channels: 1,
      return: returns }));
    for (const chunk of this.pending) this.sendNow(chunk);
    this.pending = [];
    if (this.stopping) this.ws.send(JSON.stringify({ type: "end" }));
  }

  push(samples) { // Float32Array at this.rate
    if (this.stopping || this.failed) return;
    if (this.ws.readyState === WebSocket.CONNECTING) this.pending.push(samples);
    else if (this.ws.readyState === WebSocket.OPEN) this.sendNow(samples);
  }

  sendNow(samples) {
    this.ws.send(samples);
    this.samplesSent += samples.length;
    this.frames.push({ end: this.samplesSent, t: performance.now() });
    if (this.sent) this.sent.push(samples.slice());
  }

  stop() { // end of audio: the server answers the last tokens, then end
    if (this.stopping) return;
    this.stopping = true;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
  }

  onMessage(ev) {
    if (typeof ev.data !== "string") {
      if (this.awaitingAudio) this.onAudio(new Float32Array(ev.data));
      this.awaitingAudio = false;
      return;
    }
    const m = JSON.parse(ev.data);
    if (m.type === "ready") {
      this.ready = m;
      setStatus("streaming", `streaming ${this.kind} at ${this.rate} Hz`);
      $("facts").textContent = `model ${m.model} (${m.backend}), vocabulary ${m.vocabulary}, ` +
        `${m.tokens_per_block.reduce((a, b) => a + b, 0)} tokens per ${m.block_size / m.sample_rate * 1000} ms ` +
        `block, session ${m.session}`;
    } else if (m.type === "tokens") {
      this.onTokens(m);
    } else if (m.type === "end") {
      this.ended = true; this.endBlocks = m.blocks;
      setStatus("ended", `ended: ${m.blocks} blocks`);
    } else if (m.type === "error") {
      this.failed = true;
      const reconnect = m.code === "going_away" || m.code === "internal" || m.code === "idle_timeout";
      showMessage("server_error", `The server stopped the stream (${m.code}): ${m.message}`, { reconnect });
    }
  }

  onTokens(m) {
    const now = performance.now();
    for (let l = 0; l < 3; l++) {
      this.codes[l].push(...m.codes[l]);
      if (m.levels) this.levels[l].push(...m.levels[l]);
      this.text[l].push(m.text[l]);
    }
    this.blocks = m.seq + 1;
    this.serverMs.push(m.timing.server_ms);
    while (this.frames.length && this.frames[0].end < m.timing.input_samples) this.frames.shift();
    if (this.frames.length) this.wireMs.push(now - this.frames[0].t);
    this.arrivals.push(now);
    this.awaitingAudio = Boolean(m.audio);
    render.tokens(m);
  }

  onAudio(block) {
    this.audioBlocks += 1;
    if (this.decoded) this.decoded.push(block);
    if (!this.playCtx) return;
    const buf = this.playCtx.createBuffer(1, block.length, this.ready.sample_rate);
    buf.copyToChannel(block, 0);
    const src = this.playCtx.createBufferSource();
    src.buffer = buf;
    src.connect(this.playCtx.destination);
    this.playAt = Math.max(this.playAt, this.playCtx.currentTime + 0.05);
    src.start(this.playAt);
    this.playAt += buf.duration;
  }

  async onClose(ev) {
    if (page.stream === this) stopSource();
    if (!this.opened) {
      const [kind, text] = await diagnoseRefusal(this.token);
      showMessage(kind, text);
      setStatus("refused", "not connected");
    } else if (!this.ended && !this.failed) {
      showMessage("dropped", `The connection dropped mid-stream (close code ${ev.code}` +
        (ev.reason ? `: ${ev.reason}` : "") + `) after ${this.blocks} blocks. Reconnect starts a new stream.`,
        { reconnect: true });
      setStatus("dropped", "disconnected");
    } else if (this.failed) {
      setStatus("failed", "stopped by the server");
    }
    if (this.playCtx && this.ended) setTimeout(() => this.playCtx.close(), 2000);
    updateButtons();
  }

  // the session's tokens as `llmcodec encode` writes them (llmcodec/tokens_io.py)
  tokenFile() {
    const r = this.ready;
    const tps = r.tokens_per_block.reduce((a, b) => a + b, 0) / (r.block_size / r.sample_rate);
    const d = { format: "llmcodec-tokens", version: 1, model: r.model, llm_name: r.vocabulary || "",
      sample_rate: r.sample_rate, num_samples: Math.round(this.samplesSent * r.sample_rate / this.rate),
      source_sample_rate: this.rate, block_size: r.block_size, tokens_per_second: Math.round(tps * 1e4) / 1e4,
      codes: this.codes };
    if (this.levels[0].length || !this.codes[0].length) {
      d.levels = this.levels;
      d.text = [this.text[0].join(""), this.text[1].join(" "), this.text[2].join(" ")];
    }
    return d;
  }
}

// ---- rendering ------------------------------------------------------------------------------
const render = {
  pendingMeter: null, level: -99,
  tokens(m) {
    addSpan($("words"), m.text[0].trim() || "\u00a0", MAX_SHOWN.words);
    addPieces($("level2"), m.text[1], MAX_SHOWN.pieces);
    addPieces($("level3"), m.text[2], MAX_SHOWN.pieces);
    const s = page.stream;
    $("blocks").textContent = String(s.blocks);
    const fmt = (x) => Number.isFinite(x) ? x.toFixed(1) : "–";
    const srv = summary(s.serverMs), wire = summary(s.wireMs);
    $("latency-server").textContent = `p50 ${fmt(srv.p50)} ms · p99 ${fmt(srv.p99)} ms`;
    $("latency-wire").textContent = `p50 ${fmt(wire.p50)} ms · p99 ${fmt(wire.p99)} ms`;
    const now = performance.now();
    const recent = s.arrivals.filter((t) => now - t <= 5000);
    const span = Math.max(1000, Math.min(5000, now - s.arrivals[0]));
    $("bps").textContent = (recent.length / (span / 1000)).toFixed(1);
  },
  meter(samples) {
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    const rms = 10 * Math.log10(sum / Math.max(1, samples.length) + 1e-12);
    const fall = 20 * samples.length / (page.source ? page.source.rate : 48000); // falls 20 dB/s
    this.level = Math.max(rms, this.level - fall);
    const db = this.level;
    if (this.pendingMeter === null) requestAnimationFrame(() => {
      const d = this.pendingMeter; this.pendingMeter = null;
      $("meter-bar").style.width = `${Math.max(0, Math.min(100, (d + 60) / 60 * 100)).toFixed(0)}%`;
      $("level-db").textContent = `${Math.max(-99, d).toFixed(0)} dBFS`;
    });
    this.pendingMeter = db;
  },
};

// Byte-level BPE pieces ("Ġthe", "âĢ¦") -> their text (" the", "…"): GPT-2's byte <-> character table.
const BYTE_OF_CHAR = (() => {
  const bytes = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = bytes.slice();
  for (let b = 0, extra = 0; b < 256; b++) {
    if (!bytes.includes(b)) { bytes.push(b); chars.push(256 + extra++); }
  }
  return new Map(bytes.map((b, i) => [String.fromCharCode(chars[i]), b]));
})();

function pieceText(piece) {
  const bytes = [];
  for (const ch of piece) {
    const b = BYTE_OF_CHAR.get(ch);
    if (b === undefined) return piece; // not a byte-level piece: show it as it is
    bytes.push(b);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

// spaces and control characters made visible, so a token never breaks the layout
const VISIBLE = { " ": "\u00b7", "\n": "\u21b5", "\r": "\u240d", "\t": "\u21e5" };
function visible(text) {
  return text.replace(/[\s\u0000-\u001f\u007f]/g, (c) => VISIBLE[c] || (/\s/.test(c) ? "\u00b7" : "\ufffd"));
}

function addSpan(box, text, keep) {
  const span = document.createElement("span");
  span.textContent = text;
  box.appendChild(span);
  while (box.childElementCount > keep) box.firstElementChild.remove();
}

function addPieces(box, text, keep) { // one block: its LLM tokens as chips, the raw pieces in the tooltip
  const block = document.createElement("span");
  block.className = "block";
  block.title = text;
  for (const piece of text.split(" ")) {
    const chip = document.createElement("span");
    chip.className = "piece";
    chip.textContent = visible(pieceText(piece));
    block.appendChild(chip);
  }
  box.appendChild(block);
  while (box.childElementCount > keep) box.firstElementChild.remove();
}

function resetView() {
  for (const id of ["words", "level2", "level3"]) $(id).replaceChildren();
  for (const id of ["latency-server", "latency-wire", "bps"]) $(id).textContent = "–";
  $("blocks").textContent = "0";
}

function updateButtons() {
  const s = page.stream;
  const live = s && !s.ended && !s.failed && s.ws.readyState <= WebSocket.OPEN && !s.stopping;
  $("mic").disabled = Boolean(live);
  $("file").disabled = Boolean(live);
  $("stop").disabled = !live;
  $("download").disabled = !(s && s.ready && s.codes[0].length);
}

// ---- audio sources ----------------------------------------------------------------------------
// A source pushes Float32Array chunks of about SEND_SECONDS into page.stream.
function chunker(rate, onChunk) {
  const size = Math.max(1, Math.round(rate * SEND_SECONDS));
  let parts = [], have = 0;
  return (samples) => {
    parts.push(samples); have += samples.length;
    if (have < size) return;
    const out = new Float32Array(have);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    parts = []; have = 0;
    onChunk(out);
  };
}

function feed(samples) {
  render.meter(samples);
  if (page.stream) page.stream.push(samples);
}

async function openMic() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMessage("insecure", `The microphone needs a secure origin, and this page was opened at ` +
      `${location.protocol}//${location.host}. Open it on the server's machine at http://localhost:PORT/, or serve ` +
      `it over TLS: ${TLS_HINT}. Streaming a file works here.`);
    return null;
  }
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false,
      autoGainControl: false } });
  } catch (e) {
    const [kind, text] = micErrorMessage(e);
    showMessage(kind, text);
    return null;
  }
  const track = media.getAudioTracks()[0];
  const own = track && track.getSettings().sampleRate; // the device's own rate, when the browser says
  const ok = own && own >= page.protocol.min_sample_rate && own <= page.protocol.max_sample_rate;
  const ctx = ok ? new AudioContext({ sampleRate: own }) : new AudioContext();
  await ctx.audioWorklet.addModule("capture-worklet.js");
  const input = ctx.createMediaStreamSource(media);
  const node = new AudioWorkletNode(ctx, "llmcodec-capture");
  const mute = ctx.createGain();
  mute.gain.value = 0; // keeps the worklet pulled by the graph without playing the microphone back
  input.connect(node).connect(mute).connect(ctx.destination);
  const push = chunker(ctx.sampleRate, feed);
  node.port.onmessage = (ev) => push(ev.data);
  await ctx.resume();
  return { kind: "microphone", rate: ctx.sampleRate,
    stop() { node.port.onmessage = null; media.getTracks().forEach((t) => t.stop()); ctx.close(); } };
}

async function openFile(file) {
  let audio;
  const ctx = new AudioContext();
  try {
    audio = await ctx.decodeAudioData(await file.arrayBuffer());
  } catch (e) {
    showMessage("file", `${file.name} could not be decoded (${e.message || e}); accepted: the audio formats this ` +
      "browser decodes (WAV, FLAC, MP3, Ogg Vorbis/Opus, AAC)");
    ctx.close();
    return null;
  } finally {
    if (ctx.state !== "closed") ctx.close();
  }
  const n = audio.length, rate = audio.sampleRate;
  const mono = new Float32Array(n);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const ch = audio.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += ch[i] / audio.numberOfChannels;
  }
  let pos = 0, timer = null;
  const t0 = performance.now();
  const src = { kind: `file ${file.name}`, rate, file,
    stop() { if (timer !== null) clearInterval(timer); timer = null; } };
  const size = Math.max(1, Math.round(rate * SEND_SECONDS));
  timer = setInterval(() => { // paced in real time, like a microphone: whole frames, then the rest
    const due = Math.min(n, Math.floor((performance.now() - t0) / 1000 * rate));
    while (due - pos >= size || (due === n && pos < n)) {
      const end = Math.min(n, pos + size);
      feed(mono.slice(pos, end));
      pos = end;
    }
    if (pos >= n) { src.stop(); if (page.stream) page.stream.stop(); updateButtons(); }
  }, 20);
  return src;
}

function stopSource() {
  if (page.source) page.source.stop();
  page.source = null;
}

async function begin(open) {
  clearMessage();
  stopSource();
  const source = await open();
  if (!source) { updateButtons(); return; }
  startStream(source);
}

function startStream(source) {
  resetView();
  page.source = source;
  setStatus("connecting", `connecting (${source.kind})`);
  page.stream = new Stream(source.rate, { token: $("token").value.trim(), playback: $("playback").checked,
    kind: source.kind });
  updateButtons();
}

async function reconnect() {
  clearMessage();
  const last = page.stream;
  if (last && last.kind.startsWith("file") && page.lastFile) return begin(() => openFile(page.lastFile));
  if (page.source) return startStream(page.source); // the microphone is still open
  return begin(openMic);
}

function stop() {
  stopSource();
  if (page.stream) page.stream.stop();
  updateButtons();
}

function download() {
  const blob = new Blob([JSON.stringify(page.stream.tokenFile()) + "\n"], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "tokens.json";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function init() {
  try {
    page.protocol = await (await fetch("protocol.json", { cache: "no-store" })).json();
  } catch (e) {
    showMessage("unreachable", `The server's protocol description could not be loaded (${e.message}).`);
    return;
  }
  $("controls").onsubmit = (ev) => ev.preventDefault(); // Enter in the token field starts nothing
  $("mic").onclick = () => begin(openMic);
  $("file").onchange = (ev) => {
    const f = ev.target.files[0];
    ev.target.value = "";
    if (f) { page.lastFile = f; begin(() => openFile(f)); }
  };
  $("stop").onclick = stop;
  $("reconnect").onclick = reconnect;
  $("download").onclick = download;
  setInterval(updateButtons, 500);
  setStatus("idle", "ready: start the microphone or stream a file");
  updateButtons();
  if (!window.isSecureContext) {
    showMessage("insecure", `This page is not a secure origin (${location.protocol}//${location.host}), so the ` +
      `browser will not give it the microphone. Open it at http://localhost:PORT/ on the server's machine, or ` +
      `serve over TLS: ${TLS_HINT}. Streaming a file works here.`, { error: false });
  }
}

init();
