import { useEffect, useState } from "preact/hooks";
import { api, ApiError, Device, errorText, Firmware, Me, Page, token, Update } from "../api";
import { useLive } from "../live";

export function Devices(props: { me: Me }) {
  const [page, setPage] = useState<Page<Device> | null>(null);
  const [query, setQuery] = useState("");
  const load = () => { api<Page<Device>>("GET", `/devices?page_size=100${query}`).then(setPage).catch(() => undefined); };
  useEffect(load, [query]);
  // A device registered or imported shows once the read model has it.
  useLive("types=Device", load);
  const filter = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.target as HTMLFormElement);
    const parts = ["device_model", "tag", "firmware_version"]
      .map((k) => [k, String(data.get(k) ?? "").trim()]).filter(([, v]) => v)
      .map(([k, v]) => `&${k}=${encodeURIComponent(v)}`);
    setQuery(parts.join(""));
  };
  return (
    <>
      <h1>Devices</h1>
      {props.me.may.includes("write") && <AddDevices onAdded={load} />}
      <form class="fields" onSubmit={filter} aria-label="Filter devices">
        <label>Model <input name="device_model" /></label>
        <label>Tag <input name="tag" /></label>
        <label>Firmware version <input name="firmware_version" /></label>
        <button type="submit">Filter</button>
      </form>
      <table>
        <thead><tr><th>Id</th><th>Model</th><th>Hardware</th><th>Firmware</th><th>Tags</th><th>Last seen</th></tr></thead>
        <tbody>{page?.items.map((d) => (
          <tr key={d.id}>
            <td><a href={`/ui/devices/${encodeURIComponent(d.id)}`}>{d.id}</a></td>
            <td>{d.device_model}</td><td>{d.hardware_version ?? ""}</td><td>{d.firmware_version ?? ""}</td>
            <td>{d.tags.join(", ")}</td><td>{d.last_seen ? new Date(d.last_seen).toLocaleString() : ""}</td>
          </tr>
        ))}</tbody>
      </table>
      {page && <p class="muted">{page.total} devices</p>}
    </>
  );
}

/** Register one device, or import a file of them (CSV, NDJSON or a JSON array). */
function AddDevices(props: { onAdded: () => void }) {
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const register = async (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.target as HTMLFormElement);
    const text = (k: string) => String(data.get(k) ?? "").trim() || undefined;
    try {
      const d = await api<Device & { target_token?: string }>("POST", "/devices", { id: text("id"), device_model: text("device_model"),
        hardware_version: text("hardware_version"), firmware_version: text("firmware_version"),
        tags: (text("tags") ?? "").split(",").map((t) => t.trim()).filter(Boolean) });
      setNote(d.target_token ? `Registered ${d.id}; its DDI token (shown once): ${d.target_token}` : `Updated ${d.id}.`);
      setError(null);
      props.onAdded();
    } catch (err) { setError(errorText(err)); }
  };
  const importFile = async (e: Event) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (!file) return;
    const kind = file.name.endsWith(".csv") ? "text/csv" : file.name.endsWith(".json") ? "application/json" : "application/x-ndjson";
    try {
      const response = await fetch("/api/v1/devices:import", { method: "POST", body: file,
        headers: { "Content-Type": kind, Authorization: `Bearer ${token() ?? ""}` } });
      const report = await response.json();
      if (!response.ok) throw new ApiError(response.status, report.error, report.message);
      setNote(`Imported ${report.rows} rows: ${report.created} new, ${report.updated} changed, ${report.unchanged} unchanged.`);
      setError(null);
      props.onAdded();
    } catch (err) { setError(errorText(err)); }
  };
  return (
    <section class="panel">
      <h2>Add devices</h2>
      <form class="fields" onSubmit={register} aria-label="Register a device">
        <label>Device id <input name="id" required maxLength={128} /></label>
        <label>Model <input name="device_model" required /></label>
        <label>Hardware <input name="hardware_version" /></label>
        <label>Runs version <input name="firmware_version" /></label>
        <label>Tags <input name="tags" placeholder="eu, plant-7" /></label>
        <button type="submit">Register</button>
      </form>
      <label>Import a file (CSV, NDJSON, JSON) <input type="file" accept=".csv,.ndjson,.jsonl,.json" onChange={importFile} /></label>
      {note && <p role="status">{note}</p>}
      {error && <p role="alert" class="error">{error}</p>}
    </section>
  );
}

export function DevicePage(props: { id: string; me: Me }) {
  const id = decodeURIComponent(props.id);
  const [device, setDevice] = useState<Device | null>(null);
  const [current, setCurrent] = useState<Update | null>(null);
  const [history, setHistory] = useState<Page<Update> | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const path = `/devices/${encodeURIComponent(id)}`;
  const load = () => {
    api<Device>("GET", path).then(setDevice).catch((e) => setError(errorText(e)));
    api<Update>("GET", `${path}/update`).then(setCurrent).catch((e) => {
      if (!(e instanceof ApiError && e.status === 404)) setError(errorText(e));
    });
    api<Page<Update>>("GET", `${path}/history?page_size=100`).then(setHistory).catch(() => undefined);
  };
  useEffect(load, [id]);
  useLive(`types=Device,DeviceUpdate&id=${encodeURIComponent(id)}`, load);
  const [firmware, setFirmware] = useState<Firmware[]>([]);
  useEffect(() => {
    api<Page<Firmware>>("GET", "/firmware?page_size=200").then((p) => setFirmware(p.items.filter((f) => f.status === "active"))).catch(() => undefined);
  }, []);
  const assign = async (e: Event) => {
    e.preventDefault();
    const firmwareId = String(new FormData(e.target as HTMLFormElement).get("firmware_id") ?? "");
    try { await api("POST", `${path}/update`, { firmware_id: firmwareId }); setNote("Update assigned."); setError(null); load(); }
    catch (err) { setError(errorText(err)); }
  };
  const cancel = async () => {
    try { await api("POST", `${path}/update/cancel`, {}); setNote("Cancel requested."); setError(null); load(); }
    catch (err) { setError(errorText(err)); }
  };
  const act = async (what: "rollback" | "token") => {
    try {
      const answer = await api<{ target_token?: string; action?: number }>("POST", `${path}/${what}`, {});
      setNote(what === "token" ? `New device token (shown once): ${answer.target_token ?? ""}` : "Rollback assigned.");
      setError(null);
      load();
    } catch (e) { setError(errorText(e)); }
  };
  if (!device) return error ? <p role="alert" class="error">{error}</p> : <p class="muted">Loading…</p>;
  const write = props.me.may.includes("write");
  return (
    <>
      <h1>{device.id}</h1>
      <p>{device.device_model} {device.hardware_version ?? ""} · runs <strong data-testid="running">{device.firmware_version ?? "unknown"}</strong>
        {device.tags.length ? ` · ${device.tags.join(", ")}` : ""}</p>
      {current && <p>Current update: {current.kind} to {current.firmware_version}, <span data-testid="update-state">{current.state}</span>
        {current.progress !== null ? ` (${current.progress} %)` : ""}</p>}
      {write && <div class="actions">
        <button type="button" onClick={() => act("rollback")}>Roll back</button>
        <button type="button" onClick={() => act("token")}>Rotate token</button>
        {current && !current.finished_at && <button type="button" onClick={cancel}>Cancel the update</button>}
      </div>}
      {write && (
        <form class="fields" onSubmit={assign} aria-label="Update this device">
          <label>Firmware
            <select name="firmware_id" required>
              <option value="">choose…</option>
              {firmware.filter((f) => f.device_model === device.device_model).map((f) => <option key={f.id} value={f.id}>{f.name} {f.version}</option>)}
            </select>
          </label>
          <button type="submit">Update this device</button>
        </form>
      )}
      {note && <p role="status">{note}</p>}
      {error && <p role="alert" class="error">{error}</p>}
      <h2>History</h2>
      <ol class="timeline">{history?.items.map((u) => (
        <li key={u.action}>
          <strong>{u.kind}</strong> {u.from_version ?? "?"} → {u.firmware_version}: {u.state}
          {u.campaign_id ? <> in <a href={`/ui/campaigns/${u.campaign_id}`}>a campaign</a></> : ""}
          <span class="muted"> · assigned {new Date(u.assigned_at).toLocaleString()} by {u.assigned_by ?? "?"}
            {u.finished_at ? `, ended ${new Date(u.finished_at).toLocaleString()}` : ""}</span>
        </li>
      ))}</ol>
    </>
  );
}
