// Following a job's progress: GET /v1/jobs/{id}/events (text/event-stream). The gateway names each event
// by its stage (queued, planning, editing, step, done, error, cancelled); data is a JobEvent JSON object.
//
// Without an API key this is a plain EventSource. EventSource cannot send an Authorization header, so when
// the gateway needs a key the same stream is read with fetch() and parsed here; both paths resume after the
// last event id (Last-Event-ID / ?after=) when the connection drops.

const STAGES = ["queued", "planning", "editing", "step", "done", "error", "cancelled"];
const FINAL = new Set(["done", "error", "cancelled"]);
const MAX_RECONNECTS = 5;

/**
 * Follow `url`. `onEvent(stage, data)` gets every event; `onLost(error)` is called once if the stream ends
 * for good before a final event (the caller then reads the job itself). Returns {close()}.
 */
export function followEvents(url, { key = null, onEvent, onLost }) {
  return key ? followWithFetch(url, key, onEvent, onLost) : followWithEventSource(url, onEvent, onLost);
}

function followWithEventSource(url, onEvent, onLost) {
  const source = new EventSource(url);
  let finished = false;
  const finish = () => {
    finished = true;
    source.close(); // or EventSource would reconnect after the server ends the stream
  };
  for (const stage of STAGES) {
    source.addEventListener(stage, (event) => {
      // The job's own "error" event is a MessageEvent with data; the connection's error is a bare Event.
      if (!(event instanceof MessageEvent)) return;
      if (FINAL.has(stage)) finish();
      onEvent(stage, parse(event.data));
    });
  }
  source.addEventListener("error", (event) => {
    if (event instanceof MessageEvent || finished) return;
    // CONNECTING: the browser retries by itself (sending Last-Event-ID). CLOSED: an HTTP error; give up.
    if (source.readyState === EventSource.CLOSED) {
      finished = true;
      onLost(new Error("the progress stream was refused"));
    }
  });
  return { close: finish };
}

function followWithFetch(url, key, onEvent, onLost) {
  const controller = new AbortController();
  let lastId = null;
  let finished = false;

  async function readOnce() {
    const target = lastId === null ? url : `${url}${url.includes("?") ? "&" : "?"}after=${encodeURIComponent(lastId)}`;
    const response = await fetch(target, {
      headers: { Accept: "text/event-stream", Authorization: `Bearer ${key}` },
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const error = new Error(`the progress stream answered HTTP ${response.status}`);
      error.final = response.status >= 400 && response.status < 500; // no point in asking again
      throw error;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const message = parseBlock(block);
        if (!message) continue;
        if (message.id !== null) lastId = message.id;
        if (FINAL.has(message.event)) finished = true;
        onEvent(message.event, parse(message.data));
        if (finished) {
          controller.abort();
          return;
        }
      }
    }
  }

  (async () => {
    for (let attempt = 0; !finished && attempt <= MAX_RECONNECTS; attempt++) {
      try {
        await readOnce();
      } catch (error) {
        if (finished || controller.signal.aborted) return;
        if (error.final || attempt === MAX_RECONNECTS) {
          onLost(error);
          return;
        }
      }
      if (!finished) await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
    }
    if (!finished && !controller.signal.aborted) onLost(new Error("the progress stream ended early"));
  })();

  return {
    close() {
      finished = true;
      controller.abort();
    },
  };
}

/** One SSE block → {event, data, id}; null for comments and keep-alives. */
function parseBlock(block) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  return data.length ? { event, data: data.join("\n"), id } : null;
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}
