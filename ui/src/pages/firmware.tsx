import { useEffect, useState } from "preact/hooks";
import { api, errorText, Firmware, Me, Page, upload } from "../api";
import { useLive } from "../live";

function verdict(f: Firmware): string {
  const s = f.signature;
  if (!s) return "unsigned";
  if (typeof s === "string") return s;
  return [s.status, s.key_id].filter(Boolean).join(" by ") || "unsigned";
}

export function FirmwarePage(props: { me: Me }) {
  const [page, setPage] = useState<Page<Firmware> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => { api<Page<Firmware>>("GET", "/firmware?page_size=100").then(setPage).catch((e) => setError(errorText(e))); };
  useEffect(load, []);
  useLive("types=Firmware", load);
  const deprecate = async (id: string) => {
    try { await api("POST", `/firmware/${id}/deprecate`); load(); } catch (e) { setError(errorText(e)); }
  };
  const write = props.me.may.includes("write");
  return (
    <>
      <h1>Firmware</h1>
      {write && <UploadForm onUploaded={load} />}
      {error && <p role="alert" class="error">{error}</p>}
      <table>
        <thead><tr><th>Name</th><th>Version</th><th>Model</th><th>Size</th><th>SHA-256</th><th>Signature</th><th>Status</th><th></th></tr></thead>
        <tbody>
          {page?.items.map((f) => (
            <tr key={f.id}>
              <td><a href={`/ui/firmware/${f.id}`}>{f.name}</a></td><td>{f.version}</td><td>{f.device_model}</td><td>{f.size}</td>
              <td><code title={f.sha256}>{f.sha256.slice(0, 12)}…</code></td>
              <td>{verdict(f)}</td><td>{f.status}</td>
              <td>{write && f.status === "active" && (
                <button type="button" onClick={() => deprecate(f.id)} aria-label={`Deprecate ${f.name} ${f.version}`}>Deprecate</button>
              )}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function UploadForm(props: { onUploaded: () => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [percent, setPercent] = useState<number | null>(null);
  const [result, setResult] = useState<Firmware | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [over, setOver] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const data = new FormData(form);
    if (!file) { setError("choose or drop the image file"); return; }
    const hardware = String(data.get("hardware_versions") ?? "").split(",").map((h) => h.trim()).filter(Boolean);
    const notes = String(data.get("release_notes") ?? "").trim();
    const releaseFile = data.get("release");
    let release: unknown;
    if (releaseFile instanceof File && releaseFile.size > 0) {
      try { release = JSON.parse(await releaseFile.text()); } catch { setError("the signed release is not JSON (ota firmware sign writes it)"); return; }
    }
    const metadata = { name: data.get("name"), version: data.get("version"), device_model: data.get("device_model"),
      ...(hardware.length ? { hardware_versions: hardware } : {}), ...(notes ? { release_notes: notes } : {}),
      ...(release ? { release } : {}) };
    const body = new FormData();
    body.append("metadata", new Blob([JSON.stringify(metadata)], { type: "application/json" }));
    body.append("file", file, file.name);
    setError(null); setResult(null); setPercent(0);
    try {
      setResult(await upload<Firmware>("/firmware", body, setPercent));
      props.onUploaded();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <form class="panel" onSubmit={submit} aria-label="Upload firmware">
      <h2>Upload</h2>
      <div class={`drop ${over ? "over" : ""}`}
        onDragOver={(e) => { e.preventDefault(); setOver(true); }} onDragLeave={() => setOver(false)}
        onDrop={(e) => { e.preventDefault(); setOver(false); const f = e.dataTransfer?.files?.[0]; if (f) setFile(f); }}>
        <label for="image">Image file</label>{" "}
        <input id="image" type="file" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)} />
        <span class="muted"> or drop it here{file ? `: ${file.name}` : ""}</span>
      </div>
      <div class="fields">
        <label>Name <input name="name" required maxLength={100} /></label>
        <label>Version <input name="version" required maxLength={64} /></label>
        <label>Device model <input name="device_model" required maxLength={100} /></label>
        <label>Hardware versions <input name="hardware_versions" placeholder="rev-a, rev-b" /></label>
        <label>Release notes <input name="release_notes" maxLength={2000} /></label>
        <label>Signed release (optional, from ota firmware sign) <input name="release" type="file" accept=".json,application/json" /></label>
      </div>
      <button type="submit">Upload</button>
      {percent !== null && <progress max={100} value={percent} aria-label="Upload progress">{percent} %</progress>}
      {result && <p data-testid="uploaded">Stored {result.name} {result.version}: SHA-256 <code>{result.sha256}</code>, signature {verdict(result)}.</p>}
      {error && <p role="alert" class="error">{error}</p>}
    </form>
  );
}
