import { useEffect, useState } from "preact/hooks";
import { api, errorText, Firmware, Page } from "../api";

interface Downloads {
  stats: { downloads: number; requests: number; bytes: number; devices: number; devices_complete: number; interrupted: number };
}
interface Entry { sequence: number; event_type: string; actor: string | null; recorded_at: string }

/** One image: its hashes and signature, who fetched it, and its history. */
export function FirmwareDetail(props: { id: string }) {
  const [firmware, setFirmware] = useState<Firmware & { sha1?: string; md5?: string; release_notes?: string | null } | null>(null);
  const [downloads, setDownloads] = useState<Downloads | null>(null);
  const [history, setHistory] = useState<Page<Entry> | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api<Firmware>("GET", `/firmware/${props.id}`).then(setFirmware).catch((e) => setError(errorText(e)));
    api<Downloads>("GET", `/firmware/${props.id}/downloads?page_size=1`).then(setDownloads).catch(() => undefined);
    api<Page<Entry>>("GET", `/firmware/${props.id}/history?page_size=100`).then(setHistory).catch(() => undefined);
  }, [props.id]);
  if (!firmware) return error ? <p role="alert" class="error">{error}</p> : <p class="muted">Loading…</p>;
  const d = downloads?.stats;
  return (
    <>
      <h1>{firmware.name} {firmware.version}</h1>
      <table><tbody>
        <tr><th scope="row">Model</th><td>{firmware.device_model}{firmware.hardware_versions.length ? ` (${firmware.hardware_versions.join(", ")})` : ""}</td></tr>
        <tr><th scope="row">Status</th><td>{firmware.status}</td></tr>
        <tr><th scope="row">File</th><td>{firmware.filename}, {firmware.size} bytes</td></tr>
        <tr><th scope="row">SHA-256</th><td><code>{firmware.sha256}</code></td></tr>
        {firmware.sha1 && <tr><th scope="row">SHA-1</th><td><code>{firmware.sha1}</code></td></tr>}
        {firmware.md5 && <tr><th scope="row">MD5</th><td><code>{firmware.md5}</code></td></tr>}
        <tr><th scope="row">Signature</th><td>{typeof firmware.signature === "string" ? firmware.signature : JSON.stringify(firmware.signature)}</td></tr>
        <tr><th scope="row">Uploaded</th><td>{new Date(firmware.created_at).toLocaleString()} by {firmware.created_by ?? "?"}</td></tr>
      </tbody></table>
      <h2>Downloads</h2>
      {d ? <p data-testid="downloads">{d.devices} devices ({d.devices_complete} complete), {d.downloads} downloads, {d.bytes} bytes, {d.interrupted} interrupted</p> : <p class="muted">none yet</p>}
      <h2>History</h2>
      <ol>{history?.items.map((h) => <li key={h.sequence}>{new Date(h.recorded_at).toLocaleString()} · {h.event_type} · {h.actor ?? ""}</li>)}</ol>
    </>
  );
}
