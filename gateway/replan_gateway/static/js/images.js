// Reading the image to edit: an uploaded or dropped file, or a bundled example (a same-origin static file).
// The page keeps it as a data URI, which is what the API's `image` field takes, plus its natural size,
// which is the coordinate space of the boxes.

const ACCEPTED = ["image/png", "image/jpeg", "image/webp"];

/** {dataUrl, width, height, name, bytes} from a File or Blob; throws Error with a sentence-ready message. */
export async function readImage(blob, name, { maxBytes = null } = {}) {
  if (!ACCEPTED.includes(blob.type)) {
    throw new Error(`${name} is ${blob.type || "not an image"}; upload a PNG, JPEG or WebP image`);
  }
  if (maxBytes && blob.size > maxBytes) {
    throw new Error(`${name} is ${formatBytes(blob.size)}; this gateway takes images up to ${formatBytes(maxBytes)}`);
  }
  const dataUrl = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`could not read ${name}`));
    reader.readAsDataURL(blob);
  });
  const { width, height } = await imageSize(dataUrl, name);
  return { dataUrl, width, height, name, bytes: blob.size };
}

/** A bundled example, fetched from the page's own folder. */
export async function readExample(path, options) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`the example ${path} could not be loaded (HTTP ${response.status})`);
  return readImage(await response.blob(), path.split("/").pop(), options);
}

function imageSize(src, name) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve({ width: image.naturalWidth, height: image.naturalHeight });
    image.onerror = () => reject(new Error(`${name} is not an image this browser can decode`));
    image.src = src;
  });
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
