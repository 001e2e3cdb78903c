// Saving files from the page: the result PNG (already a data URI) and JSON documents (plan, settings).
// Blob URLs stay inside the browser: nothing is uploaded to save a file.

export function saveJson(name, value) {
  const blob = new Blob([JSON.stringify(value, null, 2) + "\n"], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  // Revoking at once can cancel the download in some browsers; a moment later is safe.
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** `data:image/png;base64,...` for the API's PNG base64 (which may or may not be a data URI already). */
export function pngDataUrl(base64) {
  return base64.startsWith("data:") ? base64 : `data:image/png;base64,${base64}`;
}
